"""Composition root of the MDM core: builds every service from plain configuration.

``build_core(CoreConfig(...))`` returns an :class:`MdmCore` holding the database, the event
bus, and the services wired on them. The gateway's app factory calls it; tests and the
simulator call it directly. This module is the only place that knows how the parts fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from mdm_core.events import EventBus, InProcessBus
from mdm_core.storage.sql.database import Database

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
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.bus.close()
        self.database.dispose()


def build_core(config: CoreConfig, *, bus: EventBus | None = None) -> MdmCore:
    """Open the database (migrating it), and wire the services on it."""
    database = Database(config.database_url)
    if config.migrate:
        database.migrate()
    core = MdmCore(config=config, database=database, bus=bus or InProcessBus())
    return core
