"""The offboarding service tests run on SQLite AND a real PostgreSQL (the ``database``
fixture): the job's SQL (conditional updates, ON CONFLICT, locks) must hold on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mdm_core.runtime import MdmCore
from mdm_core.storage.sql.database import Database
from tests.helpers.enrolled import make_core


@pytest.fixture
def core(database: Database, tmp_path: Path) -> Iterator[MdmCore]:
    core = make_core(database, tmp_path)
    try:
        yield core
    finally:
        core.close()
