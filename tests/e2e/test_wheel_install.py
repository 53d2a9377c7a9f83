"""Installable: a wheel built from the repository, installed in a clean virtual environment,
works from any directory (the shipped policies are package data, ``policy_dir`` defaults to
them) and its build carries no setuptools license deprecation warning.

Slow (a build, a fresh venv, dependencies from the package index through pip's cache): run
with the rest of ``make test``; ``-m "not slow"`` leaves it out of a quick run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # a cold pip cache takes minutes


def _copy_repo(dest: Path) -> Path:
    """A copy of the source tree (the build writes build/ and *.egg-info next to it)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "__pycache__", "*.egg-info", "build", "dist",
        ".mypy_cache", ".ruff_cache", ".pytest_cache", "var",
    )  # fmt: skip
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    return dest


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout + done.stderr


def test_wheel_in_a_clean_venv_runs_help_policy_check_and_demo_anywhere(tmp_path: Path) -> None:
    build_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_NO_INDEX")}
    source = _copy_repo(tmp_path / "src")
    wheels = tmp_path / "wheels"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(wheels), "."],
        cwd=source,
        env=build_env,
        timeout=600,
    )
    assert "License classifiers are deprecated" not in built
    assert "project.license` as a TOML table is deprecated" not in built
    (wheel,) = wheels.glob("posture_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("access.yaml", "compliance/baseline.yaml", "privacy/byod-default.yaml"):
        assert f"posture_gateway/default_policies/{shipped}" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=build_env, timeout=300)
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        cwd=tmp_path,
        env=build_env,
        timeout=900,
    )

    anywhere = tmp_path / "anywhere"
    anywhere.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(anywhere), "COLUMNS": "100"}
    posture = str(venv / "bin" / "posture")
    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import posture_gateway; print(posture_gateway.__file__)",
        ],
        cwd=anywhere,
        env=env,
        timeout=60,
    )
    assert str(venv) in where and str(REPO) not in where  # the installed copy, not the checkout
    assert "Usage: posture" in _run([posture, "--help"], cwd=anywhere, env=env, timeout=60)
    checked = _run([posture, "policy", "check"], cwd=anywhere, env=env, timeout=120)
    assert "valid" in checked and "problem" not in checked
    demo = _run([posture, "demo"], cwd=anywhere, env=env, timeout=300)
    assert "every step happened as told" in demo
    leftovers = {p.name for p in anywhere.iterdir()} - {".gunicorn", ".cache"}
    assert leftovers == set(), leftovers  # nothing written to the working directory
