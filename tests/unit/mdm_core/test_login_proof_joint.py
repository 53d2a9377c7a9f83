"""A login proof through the read model's identities and the joint Redis nonce + replay trip.

The verifier spends the proof's nonce and records its ``jti`` in ONE Redis round trip
(:class:`mdm_core.device.proof.RedisSpendable` over a
:class:`mdm_core.device.proof.JointReplayStore`) — and only once the signature and the claims
hold; a nonce that is not live is ``NonceMismatch``, a jti seen before is ``ReplayedProof``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mdm_core.device.proof import DeviceProofVerifier, RedisSpendable
from mdm_core.domain.errors import BadSignature, NonceMismatch, ReplayedProof, WrongTarget
from mdm_core.read_model.decision_reads import CachedDecisionReads
from mdm_core.redis_backends.client import connect_redis
from mdm_core.redis_backends.replay import RedisReplayStore
from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.device_keys import DeviceKey
from tests.helpers.enrolled import PUBLIC_URL, EnrolledDevice, enroll_device, make_core

AUD = PUBLIC_URL + "/api/v1/decision"


class _Nonces:
    """Nonces as Redis keys, spent by the verifier's pipeline (or by calling)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.calls = 0

    def issue(self) -> str:
        nonce = uuid.uuid4().hex
        self.client.set("t:nonce:" + nonce, b"", px=60_000)
        return nonce

    def live(self, nonce: str) -> bool:
        return bool(self.client.exists("t:nonce:" + nonce))

    def __call__(self, nonce: str) -> bool:
        self.calls += 1
        return int(self.client.delete("t:nonce:" + nonce)) == 1

    def redis_key(self, nonce: str) -> str | None:
        return "t:nonce:" + nonce


@pytest.fixture
def setup(
    sqlite_database: Database, tmp_path: Path, redis_url: str
) -> Iterator[tuple[MdmCore, DeviceProofVerifier, _Nonces, EnrolledDevice]]:
    core = make_core(sqlite_database, tmp_path)
    client = connect_redis(redis_url)
    verifier = DeviceProofVerifier(
        core.storage,
        max_age=core.config.proof_max_age,
        leeway=core.config.proof_leeway,
        replay=RedisReplayStore(client, prefix="t:jti:" + uuid.uuid4().hex[:8] + ":"),
    )
    dev = enroll_device(core, "alice")
    try:
        yield core, verifier, _Nonces(client), dev
    finally:
        client.close()
        core.close()


def test_joint_spend_then_replay_refused(
    setup: tuple[MdmCore, DeviceProofVerifier, _Nonces, EnrolledDevice],
) -> None:
    core, verifier, nonces, dev = setup
    reads = CachedDecisionReads(core.storage)
    assert isinstance(nonces, RedisSpendable)
    nonce = nonces.issue()
    proof = dev.login_proof(audience=AUD, nonce=nonce)
    verified = verifier.verify_login_proof(
        proof, audience=AUD, nonce=nonces, identities=reads.identity
    )
    assert verified.device.device.id == dev.device_id
    assert nonces.calls == 0 and not nonces.live(nonce)  # spent by the pipeline
    with pytest.raises(NonceMismatch):  # the nonce is gone
        verifier.verify_login_proof(proof, audience=AUD, nonce=nonces, identities=reads.identity)
    # The same proof with its nonce live again: the jti is remembered.
    nonces.client.set("t:nonce:" + nonce, b"", px=60_000)
    with pytest.raises(ReplayedProof):
        verifier.verify_login_proof(proof, audience=AUD, nonce=nonces, identities=reads.identity)


def test_nothing_is_spent_before_the_signature_and_claims_hold(
    setup: tuple[MdmCore, DeviceProofVerifier, _Nonces, EnrolledDevice],
) -> None:
    _core, verifier, nonces, dev = setup
    nonce = nonces.issue()
    forged = DeviceKey.generate().login_proof(dev.device_id, audience=AUD, nonce=nonce)
    with pytest.raises(BadSignature):
        verifier.verify_login_proof(forged, audience=AUD, nonce=nonces)
    wrong_aud = dev.login_proof(audience="https://other.test", nonce=nonce)
    with pytest.raises(WrongTarget):
        verifier.verify_login_proof(wrong_aud, audience=AUD, nonce=nonces)
    assert nonces.live(nonce)
    good = dev.login_proof(audience=AUD, nonce=nonce)
    assert verifier.verify_login_proof(good, audience=AUD, nonce=nonces).device
    assert not nonces.live(nonce)
