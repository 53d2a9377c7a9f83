"""Composition root of the MDM core: builds every service from plain configuration.

``build_core(CoreConfig(...))`` returns an :class:`MdmCore` holding the database, the event
bus, and the services wired on them. The gateway's app factory calls it; tests and the
simulator call it directly. This module is the only place that knows how the parts fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mdm_core.ca import CertificateAuthority, load_or_create_ca
from mdm_core.checkin import CheckinService
from mdm_core.commands import CommandService
from mdm_core.device_proof import DeviceProofVerifier
from mdm_core.enrollment import EnrollmentService
from mdm_core.events import EventBus, InProcessBus
from mdm_core.outbox_relay import OutboxRelay
from mdm_core.privacy import PrivacyProfiles
from mdm_core.storage.sql.database import Database
from mdm_core.storage.sql.uow import SqlStorage

__all__ = ["CoreConfig", "MdmCore", "build_core"]


@dataclass(frozen=True)
class CoreConfig:
    """What the MDM core needs to know; the gateway maps its Settings onto this."""

    database_url: str
    data_dir: Path
    public_url: str  # base URL devices talk to; device proofs are bound to URLs under it
    policy_dir: Path = Path("policies")
    dev_mode: bool = False
    ca_passphrase: str | None = None
    ca_key_path: Path | None = None
    ca_cert_path: Path | None = None
    device_cert_lifetime: timedelta = timedelta(days=30)
    renew_before: timedelta = timedelta(days=7)
    proof_max_age: timedelta = timedelta(seconds=120)
    proof_leeway: timedelta = timedelta(seconds=5)
    posture_history_length: int = 20
    migrate: bool = True


@dataclass
class MdmCore:
    """The MDM core's services, wired. Attributes are added as capabilities land."""

    config: CoreConfig
    database: Database
    bus: EventBus
    storage: SqlStorage
    ca: CertificateAuthority
    enrollment: EnrollmentService
    proofs: DeviceProofVerifier
    privacy: PrivacyProfiles
    commands: CommandService
    checkin: CheckinService
    relay: OutboxRelay
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.relay.stop()
        self.bus.close()
        self.database.dispose()


def build_core(config: CoreConfig, *, bus: EventBus | None = None) -> MdmCore:
    """Open the database (migrating it), and wire the services on it."""
    database = Database(config.database_url)
    if config.migrate:
        database.migrate()
    storage = SqlStorage(database)
    ca = load_or_create_ca(
        storage,
        data_dir=config.data_dir,
        dev_mode=config.dev_mode,
        passphrase=config.ca_passphrase,
        key_path=config.ca_key_path,
        cert_path=config.ca_cert_path,
    )
    bus = bus or InProcessBus()
    relay = OutboxRelay(storage, bus)
    privacy = PrivacyProfiles(config.policy_dir / "privacy")
    commands = CommandService(storage, kick=relay.kick)
    core = MdmCore(
        config=config,
        database=database,
        bus=bus or InProcessBus(),
        storage=storage,
        ca=ca,
        enrollment=EnrollmentService(
            storage,
            ca,
            checkin_url=config.public_url.rstrip("/") + "/mdm/v1/checkin",
            cert_lifetime=config.device_cert_lifetime,
            current_notice_id=lambda ownership: privacy.for_ownership(ownership).id,
        ),
        proofs=DeviceProofVerifier(
            storage, max_age=config.proof_max_age, leeway=config.proof_leeway
        ),
        privacy=privacy,
        commands=commands,
        checkin=CheckinService(
            storage,
            privacy,
            commands,
            history_length=config.posture_history_length,
            kick=relay.kick,
        ),
        relay=relay,
    )
    relay.start()
    return core
