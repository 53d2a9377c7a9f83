"""Regenerate the initial Alembic revision from ``mdm_core.storage.sql.tables``.

Pre-release only: until the first release there is one revision, rewritten whenever the
tables change. After a release, add revisions with ``alembic revision --autogenerate``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command

from mdm_core.storage.sql.database import MIGRATIONS_DIR, Database

versions = MIGRATIONS_DIR / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    db = Database(f"sqlite:///{tmp}/gen.sqlite3")
    cfg = db.alembic_config()
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    db.dispose()
for path in versions.glob("0001_*.py"):
    # the generated file must pass `make lint` as it is
    subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "-q", str(path)], check=False)
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False)
    print("wrote", path.relative_to(Path.cwd()))
