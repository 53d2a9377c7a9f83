"""``posture demo`` runs the whole story against a real server and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_posture_demo_runs_to_exit_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env["COLUMNS"] = "120"
    posture = Path(sys.executable).with_name("posture")
    t0 = time.monotonic()
    done = subprocess.run(
        [str(posture), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "every step happened as told" in out
    for expected in (
        "registers serial",
        "privacy notice",
        "dropped before storage",
        "queued",
        "acknowledged",
        "Audit trail",
    ):
        assert expected in out, expected
    assert elapsed < 60
    assert list(tmp_path.iterdir()) == []  # the demo cleans up after itself, writes nothing here


def test_demo_failure_exits_non_zero(tmp_path: Path) -> None:
    """A step that does not happen as told stops the demo with a non-zero exit."""
    code = (
        "import sys\n"
        "import posture_gateway.demo as d\n"
        "def broken(story):\n"
        "    d.check(False, 'the lock was not delivered')\n"
        "d.STEPS.insert(1, ('a step that fails', broken))\n"
        "sys.argv = ['posture', 'demo']\n"
        "from posture_gateway.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "demo failed" in done.stdout and "the lock was not delivered" in done.stdout
