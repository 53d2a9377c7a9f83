"""Composition root of the MDM core: builds every service from plain configuration.

``build_core(CoreConfig(...))`` returns an :class:`MdmCore` holding the database, the event
bus, and the services wired on them. The gateway's app factory calls it; tests and the
simulator call it directly. This module is the only place that knows how the parts fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mdm_core.bus.events import EventBus, EventType, InProcessBus
from mdm_core.bus.outbox_relay import OutboxRelay
from mdm_core.device.ca import CertificateAuthority, check_ca_config, load_or_create_ca
from mdm_core.device.checkin import CheckinService
from mdm_core.device.commands import CommandService
from mdm_core.device.convergence import ConvergenceService
from mdm_core.device.enrollment import EnrollmentService
from mdm_core.device.long_poll import (
    DEFAULT_MAX_WAIT_S,
    DEFAULT_MAX_WAITS,
    LONG_POLL_KEY,
    WaitRegistry,
)
from mdm_core.device.proof import DeviceProofVerifier
from mdm_core.device.wipes import WipeService
from mdm_core.directory.mirror import DirectoryService
from mdm_core.directory.precedence import SourceOfTruth
from mdm_core.domain.privacy import PrivacyProfiles
from mdm_core.domain.quarantine import QuarantineService
from mdm_core.policy.compliance_hook import PolicyComplianceHook
from mdm_core.policy.repository import PolicyRepository
from mdm_core.ratelimit.limiter import RateLimiter
from mdm_core.storage.replay import ReplayStore
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
    redis_url: str | None = None  # shared Redis (replay store, ...); None: SQL / in-process
    # POST /mdm/v1/enroll: attempts per client address, and per target (serial or token).
    enroll_limit_per_source: int = 20
    enroll_source_window: timedelta = timedelta(minutes=1)
    enroll_limit_per_target: int = 10
    enroll_target_window: timedelta = timedelta(minutes=10)
    migrate: bool = True
    max_waits: int = (
        DEFAULT_MAX_WAITS  # concurrent long-polls per process (mdm_core.device.long_poll)
    )
    max_wait_s: int = DEFAULT_MAX_WAIT_S  # the longest a long-poll is held
    #: Per user attribute, the directory sources that win, in order (empty: one owner per
    #: record). mdm_core.directory.precedence.
    directory_source_of_truth: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


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
    directory: DirectoryService
    policies: PolicyRepository  # the policy set in force, reloaded when files change
    #: The one rate limiter shared by every process (Redis when configured, else the SQL
    #: table): /enroll, failed logins, and any other limit that must hold across workers.
    rate_limiter: RateLimiter
    quarantine: QuarantineService  # the admin release of quarantined devices
    #: Membership changes and policy edits queue the commands that make devices match.
    convergence: ConvergenceService
    #: Full wipes: corporate only, the two-person rule, the one place that queues a wipe.
    wipes: WipeService
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        waits = self.extras.get(LONG_POLL_KEY)
        if isinstance(waits, WaitRegistry):
            waits.shutdown()
        self.policies.stop()
        self.relay.stop()
        self.convergence.stop()
        self.bus.close()
        self.database.dispose()


def build_core(config: CoreConfig, *, bus: EventBus | None = None) -> MdmCore:
    """Open the database (migrating it), and wire the services on it."""
    check_ca_config(  # a CA that cannot work stops here, before the database is created
        dev_mode=config.dev_mode,
        passphrase=config.ca_passphrase,
        key_path=config.ca_key_path,
        cert_path=config.ca_cert_path,
    )
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
    directory = DirectoryService(
        storage, source_of_truth=SourceOfTruth.parse(config.directory_source_of_truth)
    )
    # Unknown group references are warned about once the mirror holds any group.
    policies = PolicyRepository(
        config.policy_dir, known_groups=lambda: directory.group_names() or None
    )
    policies.start()
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
            storage,
            max_age=config.proof_max_age,
            leeway=config.proof_leeway,
            replay=_replay_store(config),  # None: used_proofs in the caller's transaction
        ),
        privacy=privacy,
        commands=commands,
        checkin=CheckinService(
            storage,
            privacy,
            commands,
            history_length=config.posture_history_length,
            compliance=PolicyComplianceHook(policies),
            kick=relay.kick,
        ),
        relay=relay,
        directory=directory,
        policies=policies,
        rate_limiter=_rate_limiter(config, database),
        quarantine=QuarantineService(storage),
        convergence=ConvergenceService(storage, commands, policies.current),
        wipes=WipeService(storage, policies.current, kick=relay.kick),
    )
    bus.subscribe(EventType.USER_GROUPS_CHANGED, core.convergence.on_user_groups_changed)
    policies.on_change(core.convergence.on_policy_change)
    core.convergence.start()
    core.extras[LONG_POLL_KEY] = WaitRegistry(
        bus, max_waits=config.max_waits, max_wait_s=config.max_wait_s
    )
    relay.start()
    return core


def _replay_store(config: CoreConfig) -> ReplayStore | None:
    """The shared Redis replay store when Redis is configured, else ``None`` (SQL)."""
    if not config.redis_url:
        return None
    from mdm_core.redis_backends.client import connect_redis
    from mdm_core.redis_backends.replay import RedisReplayStore

    return RedisReplayStore(connect_redis(config.redis_url))


def _rate_limiter(config: CoreConfig, database: Database) -> RateLimiter:
    """Redis when ``redis_url`` is set, else the ``rate_limits`` table: both shared by every
    process, so a limit never multiplies with the number of workers."""
    if not config.redis_url:
        from mdm_core.ratelimit.sql import SqlRateLimiter

        return SqlRateLimiter(database)
    from mdm_core.redis_backends.client import connect_redis
    from mdm_core.redis_backends.rate_limiter import RedisRateLimiter

    return RedisRateLimiter(connect_redis(config.redis_url))
