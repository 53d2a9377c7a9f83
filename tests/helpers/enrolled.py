"""Enrolled test devices and a wired MDM core on a test database.

::

    core = make_core(database, tmp_path)             # build_core on the test database
    dev = enroll_device(core, "alice")               # token enrollment through the service
    proof = dev.request_proof("POST", core.config.public_url + "/mdm/v1/checkin", body)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from mdm_core.device.enrollment import EnrollmentRequest, EnrollmentResult
from mdm_core.posture.model import Ownership, Platform
from mdm_core.runtime import CoreConfig, MdmCore, build_core
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey

__all__ = ["PUBLIC_URL", "EnrolledDevice", "enroll_device", "make_core", "core_config"]

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://mdm.test"


def core_config(database: Database, tmp_path: Path, **overrides: Any) -> CoreConfig:
    config = CoreConfig(
        database_url=database.url,
        data_dir=tmp_path / "data",
        public_url=PUBLIC_URL,
        policy_dir=ROOT / "policies",
        dev_mode=True,
        migrate=False,
    )
    return replace(config, **overrides)


def make_core(database: Database, tmp_path: Path, **overrides: Any) -> MdmCore:
    """``build_core`` on an already migrated test database (dev mode, generated CA)."""
    return build_core(core_config(database, tmp_path, **overrides))


@dataclass
class EnrolledDevice:
    device_id: str
    user_id: str
    key: DeviceKey
    certificate_pem: str
    result: EnrollmentResult
    extra: dict[str, Any] = field(default_factory=dict)

    def request_proof(self, method: str, url: str, body: bytes = b"", **kw: Any) -> str:
        return self.key.request_proof(self.device_id, method, url, body, **kw)

    def login_proof(self, *, audience: str, nonce: str, **kw: Any) -> str:
        return self.key.login_proof(self.device_id, audience=audience, nonce=nonce, **kw)


def enroll_device(
    core: MdmCore,
    user_id: str = "alice",
    *,
    ownership: Ownership = Ownership.CORPORATE,
    platform: Platform = Platform.MACOS,
    serial_number: str | None = None,
    key: DeviceKey | None = None,
) -> EnrolledDevice:
    """Create a token for ``user_id`` and enroll a fresh key with it (BYOD accepts the
    notice in force)."""
    key = key or DeviceKey.generate()
    token = core.enrollment.create_token(
        user_id, ownership, platform, timedelta(hours=1), "admin:test"
    )
    result = core.enrollment.enroll(
        EnrollmentRequest(
            csr_pem=key.csr_pem(),
            platform=platform,
            ownership=ownership,
            token=token,
            serial_number=serial_number,
            privacy_notice_accepted=core.enrollment.required_notice(ownership),
        )
    )
    return EnrolledDevice(
        device_id=result.device.id,
        user_id=user_id,
        key=key,
        certificate_pem=result.certificate_pem,
        result=result,
    )
