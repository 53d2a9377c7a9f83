"""Real services for the test suite: private PostgreSQL and Redis on ephemeral ports.

A test that needs PostgreSQL or Redis gets a real one: the URL from the environment
(``POSTURE_TEST_DATABASE_URL`` / ``POSTURE_TEST_REDIS_URL``) if set, else a private instance
started here in a temporary directory on a free port. A missing binary is a test *failure*
with the install hint, never a skip: CI must not go green without the real service.

Outage tests stop a private server mid-run and bring it back on the SAME port (and, for
PostgreSQL, the same data directory): ``pause()`` and ``resume()`` of :class:`PrivatePostgres`
and :class:`PrivateRedis`. ``stop()`` ends it for good.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrivatePostgres", "PrivateRedis", "free_port", "ServiceMissing"]


class ServiceMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceMissing(f"service on 127.0.0.1:{port} did not come up in {timeout}s")


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ServiceMissing(
        "PostgreSQL server binaries not found: run `make system-deps` "
        "(apt-get install postgresql) or set POSTURE_TEST_DATABASE_URL"
    )


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster owned by this test process."""

    port: int = 0
    datadir: Path | None = None
    user: str = "postgres"
    # True: production durability (fsync, synchronous_commit, full_page_writes on), as the
    # benchmarks measure by default; False: the relaxed settings that keep tests fast.
    durable: bool = False

    def start(self) -> str:
        bindir = _pg_bindir()
        self.port = free_port()
        self.datadir = Path(tempfile.mkdtemp(prefix="posture-pg-"))
        run_as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root: drop to the postgres user
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.datadir, "postgres", "postgres")
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(self.datadir / "data"),
                "-U",
                self.user,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        self._run_as = run_as
        self._bindir = bindir
        self._launch()
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _launch(self) -> None:
        assert self.datadir is not None
        subprocess.run(
            [
                *self._run_as,
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self.datadir / "data"),
                "-w",
                "-l",
                str(self.datadir / "log"),
                "-o",
                f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
                + (
                    "-c fsync=on -c synchronous_commit=on -c full_page_writes=on "
                    if self.durable
                    else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                )
                + "-c max_connections=200",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        _wait_port(self.port)

    def pause(self) -> None:
        """Stop the server at once (``-m immediate``: connections drop, as in a crash) and
        keep its data directory and port for :meth:`resume`."""
        if self.datadir is None:
            raise RuntimeError("not started")
        self._pg_stop()

    def resume(self) -> None:
        """Start the paused server again on the same port and data directory."""
        if self.datadir is None:
            raise RuntimeError("not started")
        self._launch()

    def _pg_stop(self) -> None:
        assert self.datadir is not None
        subprocess.run(
            [
                *self._run_as,
                str(self._bindir / "pg_ctl"),
                "-D",
                str(self.datadir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            check=False,
            capture_output=True,
        )

    def stop(self) -> None:
        if self.datadir is None:
            return
        self._pg_stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        self.datadir = None


@dataclass
class PrivateRedis:
    """A throwaway redis-server owned by this test process."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if not binary:
            raise ServiceMissing(
                "redis-server not found: run `make system-deps` "
                "(apt-get install redis-server) or set POSTURE_TEST_REDIS_URL"
            )
        self.port = free_port()
        self._binary = binary
        self._launch()
        return f"redis://127.0.0.1:{self.port}/0"

    def _launch(self) -> None:
        self.proc = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def pause(self) -> None:
        """Kill the server (SIGKILL: connections drop, nothing saved: it comes back empty,
        as a Redis without persistence does) and keep the port for :meth:`resume`."""
        if self.proc is None:
            raise RuntimeError("not started")
        self.proc.kill()
        self.proc.wait(timeout=10)

    def resume(self) -> None:
        """Start the server again on the same port (empty)."""
        if self.proc is None or self.proc.poll() is None:
            raise RuntimeError("not paused")
        self._launch()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
