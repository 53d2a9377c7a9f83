"""Fixtures shared by the MDM core's unit tests: a real core on SQLite in the test's temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import EnrolledDevice, enroll_device, make_core


@pytest.fixture
def core(sqlite_database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    core = make_core(sqlite_database, tmp_path)
    try:
        yield core
    finally:
        core.close()


@pytest.fixture
def dev(core: MdmCore) -> EnrolledDevice:
    """Alice's enrolled device."""
    return enroll_device(core, "alice")
