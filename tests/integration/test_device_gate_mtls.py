"""The access evaluator with a device certificate forwarded by an mTLS proxy (no login proof)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mdm_core.access.decision import Decision
from mdm_core.access.request import AccessRequest
from mdm_core.access.wiring import evaluator_for
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import MdmCore
from mdm_core.simulator.reports import DeviceTraits, native_reports
from mdm_core.storage.directory import DirectoryUser
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import EnrolledDevice, enroll_device, make_core


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    core = make_core(database, tmp_path)
    core.directory.upsert_user(
        DirectoryUser(
            id="u-alice", username="alice", active=True, source="local",
            updated_at=datetime.now(UTC),
        )
    )  # fmt: skip
    yield core
    core.close()


def _healthy(core: MdmCore) -> EnrolledDevice:
    dev = enroll_device(core, "u-alice", ownership=Ownership.CORPORATE, platform=Platform.LINUX)
    proven = core.proofs.verify(
        dev.request_proof("POST", core.config.public_url + "/mdm/v1/checkin", b"{}"),
        method="POST",
        url=core.config.public_url + "/mdm/v1/checkin",
        body=b"{}",
    )
    fmt, report = native_reports("linux", "SER-1", "corporate", DeviceTraits())[0]
    core.checkin.check_in(proven, report, fmt)
    return dev


def _check(core: MdmCore, cert: str | None, user: str = "u-alice") -> Decision:
    return evaluator_for(core).decide(
        AccessRequest(
            user_id=user,
            application="app",
            channel="oidc",
            caller="app",
            proof_audience="https://gw.test",
            client_cert_pem=cert,
        )
    )


def test_current_device_certificate_proves_the_device(core: MdmCore) -> None:
    dev = _healthy(core)
    verdict = _check(core, dev.certificate_pem)
    assert verdict.outcome in {"allow", "warn"}
    assert verdict.device_id == dev.device_id


def test_revoked_device_certificate_is_refused(core: MdmCore) -> None:
    dev = _healthy(core)
    core.enrollment.revoke_device(dev.device_id, actor="admin:test", reason="lost")
    verdict = _check(core, dev.certificate_pem)
    assert verdict.outcome == "block"
    assert verdict.reasons[0].code == "revoked_certificate"


def test_certificate_of_another_users_device_is_blocked(core: MdmCore) -> None:
    dev = _healthy(core)
    core.directory.upsert_user(
        DirectoryUser(
            id="u-bob", username="bob", active=True, source="local", updated_at=datetime.now(UTC)
        )
    )
    verdict = _check(core, dev.certificate_pem, user="u-bob")
    assert verdict.outcome == "block"
    assert "device_not_owned" in {r.code for r in verdict.reasons}


def test_garbage_certificate_is_refused(core: MdmCore) -> None:
    verdict = _check(core, "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    assert verdict.outcome == "block"
    assert verdict.reasons[0].code == "malformed_proof"
