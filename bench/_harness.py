"""The one harness of the benchmarks under ``bench/``: services, servers, data, load, report.

Every benchmark uses this module for what they all need, so each one measures the same way:

- **Services** (:class:`Services`): a private PostgreSQL (``tests.services.PrivatePostgres``)
  and Redis. PostgreSQL runs with production durability by default: ``fsync``,
  ``synchronous_commit`` and ``full_page_writes`` on; ``--relaxed`` runs a second,
  *labelled* pass with them off (what the test suite uses), so both figures are visible.
- **Servers** (:class:`Server`): the real server as it ships: ``posture --config FILE serve``
  with its default server, worker and thread counts, on PostgreSQL + Redis. Where a bench
  needs a comparison endpoint in the same processes (the bare ES256 verify), the same argv
  ``posture serve`` builds, with the bench's WSGI factory instead of the app's.
- **Data** (:func:`seed`): a realistic directory and fleet written in bulk: 20,000 enrolled
  devices (each with its own P-256 key, certificate row, posture, compliance state) cloned
  from real protocol enrollments, 10,000 users, groups nested three deep (team -> department
  -> division, every department also in ``staff``), every user in several teams.
- **Load** (:func:`run_load`): a multi-process, multi-threaded client (``http.client``
  keep-alive connections, one per thread). Closed loop: every thread runs operations back to
  back. Open loop: operation ``i`` is due at ``t0 + i / rate`` and its latency counts from
  then (no coordinated omission); a thread still busy makes the next one late, on the clock.
  The client's CPU is measured per process, and the server's, PostgreSQL's and the whole
  machine's over the same interval, so a client-bound or machine-bound run says so.
- **Report**: percentiles, rich tables, and the final JSON line every bench ends with:
  ``{"bench": NAME, "metrics": {...}, "targets": {...}, "met": true|false}`` where each target
  is ``{"metric": {"min": x}}`` or ``{"metric": {"max": x}}`` over a key of ``metrics``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for _p in (str(ROOT), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import yaml  # noqa: E402

from tests.services import PrivatePostgres, PrivateRedis, free_port  # noqa: E402

__all__ = [
    "ROOT",
    "BENCH",
    "percentile",
    "summarize",
    "mean",
    "durable_then_relaxed",
    "check_targets",
    "result_line",
    "emit",
    "Services",
    "fresh_database",
    "server_env",
    "write_config",
    "Server",
    "tree_cpu_seconds",
    "Load",
    "run_load",
    "Fleet",
    "seed",
    "print_table",
    "base_parser",
    "machine_line",
    "free_port",
    "Http",
    "load_fleet",
    "fleet_share",
    "workdir",
    "build_app",
    "user_login",
    "user_id",
]

VENV_BIN = Path(sys.executable).parent
PLATFORMS = ("ios", "ipados", "macos", "android", "windows", "linux")

# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (NaN for no values)."""
    return sum(values) / len(values) if values else float("nan")


def durable_then_relaxed(
    one_pass: Callable[[Any, bool], dict[str, Any]], args: Any
) -> dict[str, Any]:
    """``one_pass(args, durable=True)``'s metrics; with ``args.relaxed`` also a second pass
    with fsync off, its numeric figures under ``metrics["relaxed"]`` (labelled, never mixed)."""
    metrics = one_pass(args, True)
    if getattr(args, "relaxed", False):
        relaxed = one_pass(args, False)
        metrics["relaxed"] = {k: v for k, v in relaxed.items() if isinstance(v, int | float)}
    return metrics


def summarize(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p90, p99, max of ``values`` (same unit in, same unit out)."""
    if not values:
        return {
            "count": 0,
            "mean": float("nan"),
            "p50": float("nan"),
            "p90": float("nan"),
            "p99": float("nan"),
            "max": float("nan"),
        }
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
    }


# --- the JSON result line -----------------------------------------------------------------


def check_targets(metrics: Mapping[str, Any], targets: Mapping[str, Mapping[str, float]]) -> bool:
    """True when every target holds: ``{"m": {"min": x}}`` means metrics["m"] >= x, ``max``
    means <= x. A target over a missing or non-numeric metric is not met (never silently)."""
    for name, bound in targets.items():
        value = metrics.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
            return False
        if "min" in bound and value < bound["min"]:
            return False
        if "max" in bound and value > bound["max"]:
            return False
    return True


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def result_line(
    bench: str, metrics: Mapping[str, Any], targets: Mapping[str, Mapping[str, float]]
) -> str:
    """The one JSON line a benchmark ends with (NaN becomes null, floats rounded)."""
    record = {
        "bench": bench,
        "metrics": _clean(dict(metrics)),
        "targets": _clean({k: dict(v) for k, v in targets.items()}),
        "met": check_targets(metrics, targets),
    }
    return json.dumps(record, separators=(", ", ": "), sort_keys=False)


def emit(bench: str, metrics: Mapping[str, Any], targets: Mapping[str, Mapping[str, float]]) -> int:
    """Print the verdict per target as a table, then the JSON line last; returns the exit
    status (0 met, 1 missed) so ``make bench`` shows which benchmark missed."""
    rows = []
    for name, bound in targets.items():
        value = metrics.get(name)
        ok = check_targets(metrics, {name: bound})
        want = " and ".join(f"{'>=' if k == 'min' else '<='} {v:g}" for k, v in bound.items())
        shown = f"{value:,.2f}" if isinstance(value, int | float) else str(value)
        rows.append([name, shown, want, "met" if ok else "MISSED"])
    print_table(f"{bench}: targets", ["metric", "value", "target", "verdict"], rows)
    line = result_line(bench, metrics, targets)
    sys.stdout.flush()
    print(line, flush=True)
    return 0 if json.loads(line)["met"] else 1


# --- reporting ----------------------------------------------------------------------------


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on stdout (right-aligned numbers); plain text when stdout is no tty."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[_fmt(c) for c in row])
    Console(width=160).print(table)


def _fmt(cell: Any) -> str:
    if isinstance(cell, float):
        if math.isnan(cell):
            return "-"
        return f"{cell:,.1f}" if abs(cell) >= 10 else f"{cell:,.2f}"
    return str(cell)


def machine_line() -> str:
    load = os.getloadavg()[0]
    return (
        f"machine: {os.cpu_count()} cores, load average {load:.1f}, Python "
        f"{sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d %H:%M UTC}"
    )


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smoke run: small data, short loads")
    parser.add_argument(
        "--relaxed",
        action="store_true",
        help="also run a second pass on PostgreSQL with fsync/synchronous_commit off (labelled)",
    )
    return parser


# --- services -----------------------------------------------------------------------------


@dataclass
class Services:
    """A private PostgreSQL (durable unless ``durable=False``) and Redis for one pass."""

    durable: bool = True
    redis: bool = True
    pg: PrivatePostgres | None = None
    rd: PrivateRedis | None = None
    server_url: str = ""
    redis_url: str | None = None

    @property
    def label(self) -> str:
        return "durable (fsync, synchronous_commit on)" if self.durable else "RELAXED (fsync off)"

    def __enter__(self) -> Services:
        # SIGTERM unwinds like an exception, so the servers and services are stopped.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        self.pg = PrivatePostgres(durable=self.durable)
        self.server_url = self.pg.start()
        if self.redis:
            self.rd = PrivateRedis()
            self.redis_url = self.rd.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rd is not None:
            self.rd.stop()
        if self.pg is not None:
            self.pg.stop()

    def postmaster_pid(self) -> int | None:
        if self.pg is None or self.pg.datadir is None:
            return None
        try:
            pid_file = self.pg.datadir / "data" / "postmaster.pid"
            return int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def redis_pid(self) -> int | None:
        return self.rd.proc.pid if self.rd is not None and self.rd.proc is not None else None


def fresh_database(server_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = "bench_" + uuid.uuid4().hex[:12]
    engine = create_engine(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def server_env(
    db_url: str, data_dir: Path, public_url: str, redis_url: str | None
) -> dict[str, str]:
    """The environment the server starts with (only ``POSTURE_*`` of ours, none inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(
        POSTURE_DATABASE_URL=db_url,
        POSTURE_DATA_DIR=str(data_dir),
        POSTURE_PUBLIC_URL=public_url,
        POSTURE_DEV_MODE="true",  # unencrypted CA key in data_dir: no passphrase to manage
        POSTURE_POLICY_DIR=str(ROOT / "policies"),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(BENCH)]),
    )
    if redis_url:
        env["POSTURE_REDIS_URL"] = redis_url
    return env


def write_config(workdir: Path, config: Mapping[str, Any]) -> Path:
    path = workdir / "posture.yaml"
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    return path


def build_app(env: Mapping[str, str]) -> Any:
    """The production app in this process (for seeding and probes), from ``env``."""
    from posture_gateway.app import create_app
    from posture_gateway.settings import load_settings

    return create_app(load_settings(environ=env))


# --- servers ------------------------------------------------------------------------------


def tree_cpu_seconds(root: int | None) -> float:
    """utime + stime of ``root`` and every live descendant (from /proc), in seconds."""
    if root is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, stack, seen = 0.0, [root], set()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


@dataclass
class Server:
    """One server process tree on 127.0.0.1:``port``; stopped by its own process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    description: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def posture_serve(
        cls, env: dict[str, str], config: Path, port: int, workdir: Path, name: str = "ours"
    ) -> Server:
        """``posture --config CONFIG serve --port PORT``: the shipped defaults otherwise."""
        argv = [str(VENV_BIN / "posture"), "--config", str(config), "serve", "--port", str(port)]
        return cls(
            name,
            argv,
            {**env, "POSTURE_CONFIG": str(config)},
            port,
            workdir,
            description="posture serve (defaults: " + serve_defaults() + ")",
        )

    @classmethod
    def same_server(
        cls, env: dict[str, str], config: Path, port: int, workdir: Path, factory: str, name: str
    ) -> Server:
        """The argv ``posture serve`` builds with its defaults, serving ``factory`` (a
        ``module:function`` app factory) instead of the app's: same server, same workers."""
        from posture_gateway.cli import serve

        server, workers, threads = _serve_defaults()
        argv = serve._argv(server, "127.0.0.1", port, workers, threads)
        plain = serve.APP_FACTORY.removesuffix("()")
        argv = [
            factory if a == plain else factory + "()" if a == serve.APP_FACTORY else a for a in argv
        ]
        if factory not in " ".join(argv):
            raise RuntimeError(f"could not put {factory} in {argv}")
        full_env = {**env, "POSTURE_CONFIG": str(config)}
        # What posture serve does before it execs the server: the metrics directory.
        metrics_dir = Path(env["POSTURE_DATA_DIR"]) / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, mode=0o700)
        full_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        full_env.setdefault("POSTURE_LOG_FORMAT", "text")
        return cls(
            name,
            argv,
            full_env,
            port,
            workdir,
            description=f"{factory} under posture serve's argv ({serve_defaults()})",
        )

    def start(self, timeout: float = 240.0) -> Server:
        import httpx

        log = (self.workdir / f"{self.name}.log").open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv built above
            self.argv,
            env=self.env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid if self.proc else None)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the server and its workers
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        try:  # a worker that outlived its master is still in our process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if "Traceback" in self.log():
            print(f"--- {self.name} log (tail) ---\n{self.log()}", file=sys.stderr)


def _serve_defaults() -> tuple[str, int, int]:
    """``posture serve``'s default server, workers and threads, read from its options."""
    from posture_gateway.cli.serve import serve_cmd

    defaults = {p.name: p.default for p in serve_cmd.params}
    return str(defaults["server"]), int(defaults["workers"]), int(defaults["threads"])  # type: ignore[arg-type]


def serve_defaults() -> str:
    server, workers, threads = _serve_defaults()
    return f"{server}, {workers} workers, {threads} threads"


# --- load generation ----------------------------------------------------------------------

#: An operation factory: ``factory(params, process_index, thread_index)`` returns ``op(i)``,
#: one operation (one or more HTTP requests); ``op`` raises on any deviation.
OpFactory = Callable[[Mapping[str, Any], int, int], Callable[[int], Any]]


@dataclass
class Load:
    """What one load measured."""

    label: str
    mode: str  # "closed" | "open @ N/s"
    ops: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    first_error: str
    client_cpu_pct: list[float]  # per client process, 100 = one core busy
    server_cpu_pct: float = float("nan")
    db_cpu_pct: float = float("nan")
    machine_busy_pct: float = float("nan")  # all cores: 100 = every core busy
    late_ms_p99: float = float("nan")  # open loop: how late the client started the op
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms_per_op(self) -> float:
        """Server CPU per operation: less sensitive to a busy machine than the rate."""
        return self.server_cpu_pct * 10 / self.rate if self.rate else float("nan")

    @property
    def client_bound(self) -> bool:
        """A client process above 85 % of a core: the generator may be what limits."""
        return any(x > 85.0 for x in self.client_cpu_pct)

    def row(self) -> list[Any]:
        s = summarize(self.latencies_ms)
        return [
            self.label,
            self.mode,
            self.rate,
            s["p50"],
            s["p99"],
            self.errors,
            "/".join(f"{x:.0f}" for x in self.client_cpu_pct),
            self.server_cpu_pct,
            self.db_cpu_pct,
            self.machine_busy_pct,
        ]

    COLUMNS = (
        "load",
        "mode",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "client CPU % per proc",
        "server CPU %",
        "PostgreSQL CPU %",
        "machine busy %",
    )


def _worker(
    factory: OpFactory,
    params: Mapping[str, Any],
    proc_index: int,
    threads: int,
    total_threads: int,
    start_at: float,
    seconds: float,
    rate: float | None,
    out: Any,
) -> None:
    try:
        ops = [factory(params, proc_index, t) for t in range(threads)]
    except Exception:  # noqa: BLE001 - reported to the parent, which fails loudly
        out.put(("setup_error", traceback.format_exc()))
        return
    latencies: list[float] = []
    late: list[float] = []
    outcomes: dict[str, int] = {}
    errors = [0]
    dropped = [0]
    grace = max(2.0, 0.5 * seconds)
    first: list[str] = []
    lock = threading.Lock()
    end_at = start_at + seconds

    def loop(t: int) -> None:
        op = ops[t]
        slot = proc_index * threads + t  # this thread's share of the schedule
        n = 0
        mine: list[float] = []
        my_late: list[float] = []
        while True:
            if rate is None:
                now = time.time()
                if now >= end_at:
                    break
                due = now
            else:
                index = slot + n * total_threads
                due = start_at + index / rate
                if due >= end_at:
                    break
                if time.time() > end_at + grace:
                    # A server slower than the rate: stop after the grace, and count every
                    # operation still due as dropped, at its lateness now (a lower bound).
                    now = time.time()
                    while due < end_at:
                        mine.append((now - due) * 1000)
                        dropped[0] += 1
                        n += 1
                        due = start_at + (slot + n * total_threads) / rate
                    break
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                my_late.append(max(0.0, time.time() - due) * 1000)
            i = (proc_index * threads + t) * 1_000_000 + n
            n += 1
            try:
                got = op(i)
            except Exception as exc:  # noqa: BLE001 - counted and shown, never hidden
                with lock:
                    errors[0] += 1
                    if not first:
                        first.append(f"{type(exc).__name__}: {str(exc)[:300]}")
                continue
            mine.append((time.time() - due) * 1000)
            if isinstance(got, str):
                with lock:
                    outcomes[got] = outcomes.get(got, 0) + 1
        with lock:
            latencies.extend(mine)
            late.extend(my_late)

    wait = start_at - time.time()
    if wait > 0:
        time.sleep(wait)
    cpu0 = time.process_time()
    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    cpu = time.process_time() - cpu0
    elapsed = max(1e-9, time.time() - start_at)
    out.put(
        (
            "ok",
            latencies,
            errors[0],
            first[0] if first else "",
            cpu / elapsed * 100,
            late,
            outcomes,
            dropped[0],
        )
    )


def run_load(
    label: str,
    factory: OpFactory,
    params: Mapping[str, Any],
    *,
    procs: int,
    threads: int,
    seconds: float,
    rate: float | None = None,
    server: Server | None = None,
    db_pid: int | None = None,
) -> Load:
    """Run ``factory``'s operation from ``procs`` x ``threads`` client threads for
    ``seconds``: closed loop, or open loop at ``rate`` operations/s in total."""
    ctx = mp.get_context("fork")
    out: Any = ctx.Queue()
    start_at = time.time() + 1.0 + 0.3 * procs  # every process set up before the clock starts
    workers = [
        ctx.Process(
            target=_worker,
            args=(factory, params, p, threads, procs * threads, start_at, seconds, rate, out),
            daemon=True,
        )
        for p in range(procs)
    ]
    for w in workers:
        w.start()
    wait = start_at - time.time()
    if wait > 0:
        time.sleep(wait)
    s0 = server.cpu_seconds() if server else 0.0
    d0 = tree_cpu_seconds(db_pid)
    m0 = _machine_busy()
    t0 = time.time()
    results = [out.get(timeout=seconds * 3 + 120) for _ in workers]
    elapsed = time.time() - t0
    s1 = server.cpu_seconds() if server else 0.0
    d1 = tree_cpu_seconds(db_pid)
    m1 = _machine_busy()
    for w in workers:
        w.join(timeout=10)
    bad = [r[1] for r in results if r[0] != "ok"]
    if bad:
        raise RuntimeError("client set-up failed:\n" + bad[0])
    latencies = [x for r in results for x in r[1]]
    dropped = sum(r[7] for r in results)
    late = [x for r in results for x in r[5]]
    first = next((r[3] for r in results if r[3]), "")
    busy = (m1[0] - m0[0]) / max(1.0, m1[1] - m0[1]) * 100
    outcomes: dict[str, int] = {}
    for r in results:
        for k, v in r[6].items():
            outcomes[k] = outcomes.get(k, 0) + v
    load = Load(
        label=label,
        mode="closed" if rate is None else f"open @ {rate:g}/s",
        ops=len(latencies) - dropped,
        seconds=max(seconds, 1e-9) if rate is None else max(seconds, elapsed),
        latencies_ms=latencies,
        errors=sum(r[2] for r in results) + dropped,
        first_error=first,
        client_cpu_pct=[r[4] for r in results],
        server_cpu_pct=(s1 - s0) / elapsed * 100 if server else float("nan"),
        db_cpu_pct=(d1 - d0) / elapsed * 100 if db_pid else float("nan"),
        machine_busy_pct=busy,
        late_ms_p99=percentile(late, 99) if late else float("nan"),
        extra={"outcomes": outcomes, "dropped": dropped},
    )
    print("    " + " | ".join(_fmt(c) for c in load.row()), flush=True)  # survives a kill
    return load


# --- realistic data -----------------------------------------------------------------------


@dataclass
class Fleet:
    """What the seeding wrote, and what clients need to act as the devices and callers."""

    keys_file: Path  # JSON lines: {"id", "user", "platform", "serial", "key" (PKCS#8 PEM)}
    devices: int
    users: int
    groups: int
    memberships: int
    seconds: float
    templates: int

    def describe(self) -> str:
        return (
            f"{self.devices:,} devices (own P-256 key, certificate, posture, compliance state; "
            f"cloned from {self.templates} protocol enrollments), {self.users:,} users, "
            f"{self.groups} groups nested three deep, {self.memberships:,} memberships "
            f"(seeded in {self.seconds:.0f} s)"
        )


def user_login(i: int) -> str:
    return f"user{i:05d}@example.com"


def user_id(i: int) -> str:
    return f"u-{i:05d}"


def _groups() -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(id, name) groups and (group, member, kind) nesting: team -> department -> division;
    every department is also in ``staff``. The policy groups (finance, marketing, engineering)
    are divisions, so a user reaches them only through two levels of nesting."""
    divisions = ["finance", "marketing", "engineering", "sales", "operations"]
    groups = [("g-staff", "staff")] + [(f"g-{d}", d) for d in divisions]
    nesting: list[tuple[str, str, str]] = []
    for d in divisions:
        for k in range(4):
            dept = f"g-{d}-dept{k}"
            groups.append((dept, f"{d}-dept{k}"))
            nesting.append((f"g-{d}", dept, "group"))
            nesting.append(("g-staff", dept, "group"))
            for t in range(10):
                team = f"{dept}-team{t}"
                groups.append((team, f"{d}-dept{k}-team{t}"))
                nesting.append((dept, team, "group"))
    return groups, nesting


def seed(
    app: Any,
    public_url: str,
    workdir: Path,
    *,
    devices: int = 20_000,
    users: int = 10_000,
    caller: str | None = None,
    seed_value: int = 7,
) -> Fleet:
    """Write the realistic directory and fleet into the app's database, in bulk.

    Six devices (one per platform) enroll through the real protocol in-process and check in
    (every native report of their platform); the rest are clones of those rows (devices,
    certificates, latest posture, history, compliance state, rule failures), each clone with
    its own key pair, serial, certificate serial and owner. ``caller``: the posture-API
    client whose (issuer, subject) identity links are written for every user (the steady
    state: a caller's first decision for a user links it once)."""
    import httpx
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from sqlalchemy import insert, select, text
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from mdm_core.agent.client import DeviceClient, make_http_client
    from mdm_core.agent.keys import DeviceKey
    from mdm_core.device.ca import jwk_thumbprint
    from mdm_core.simulator.reports import DeviceTraits, native_reports
    from mdm_core.storage.sql.tables import (
        certificates,
        directory_groups,
        directory_memberships,
        directory_users,
        identity_links,
    )
    from mdm_core.storage.sql.tables import (
        devices as devices_t,
    )

    t0 = time.perf_counter()
    rng = random.Random(seed_value)
    st = app.extensions["posture"]
    engine = st.core.database.engine
    now = datetime.now(UTC)

    # 1. directory: users, groups nested three deep, every user in 2-4 teams (so 3+ groups
    #    reach each policy division through nesting), identity links for the caller.
    groups, nesting = _groups()
    teams = [g for g, _ in groups if "-team" in g]
    user_rows = [
        {
            "id": user_id(i),
            "username": user_login(i),
            "email": user_login(i),
            "display_name": f"User {i}",
            "active": True,
            "source": "local",
            "external_id": None,
            "updated_at": now,
        }
        for i in range(users)
    ]
    member_rows = [{"group_id": g, "member_id": m, "member_kind": k} for g, m, k in nesting]
    for i in range(users):
        for team in rng.sample(teams, rng.randint(2, 4)):
            member_rows.append({"group_id": team, "member_id": user_id(i), "member_kind": "user"})
    with engine.begin() as conn:
        # the users file of a bench may have synced some already: theirs stay
        conn.execute(pg_insert(directory_users).on_conflict_do_nothing(), user_rows)
        conn.execute(
            insert(directory_groups),
            [
                {"id": g, "name": n, "source": "local", "external_id": None, "updated_at": now}
                for g, n in groups
            ],
        )
        conn.execute(insert(directory_memberships), member_rows)
        if caller:
            conn.execute(
                insert(identity_links),
                [
                    {
                        "issuer": f"posture-api:{caller}",
                        "subject": user_login(i),
                        "user_id": user_id(i),
                        "linked_at": now,
                        "method": "username",
                    }
                    for i in range(users)
                ],
            )

    # 2. templates: one real enrollment + check-ins per platform
    http = make_http_client(public_url, transport=httpx.WSGITransport(app=app))
    run = uuid.uuid4().hex[:6].upper()
    template_ids: dict[str, str] = {}
    for n, platform in enumerate(PLATFORMS):
        serial = f"TPL{run}{n:02d}"
        secret = st.core.enrollment.register_serial(
            serial, platform, user_id(n), "admin:bench"
        ).enrollment_secret
        client = DeviceClient(public_url, DeviceKey.generate(), http=http)
        client.enroll(
            platform=platform, ownership="corporate", serial_number=serial, enrollment_secret=secret
        )
        for fmt, report in native_reports(platform, serial, "corporate", DeviceTraits()):
            client.checkin(fmt, report)
        assert client.device_id is not None
        template_ids[platform] = client.device_id
    http.close()

    # 3. clones: a key per device, rows copied from the template of its platform
    with engine.connect() as conn:
        tdev = {
            r.id: r._asdict()
            for r in conn.execute(
                select(devices_t).where(devices_t.c.id.in_(list(template_ids.values())))
            )
        }
        tcert = {
            r.device_id: r._asdict()
            for r in conn.execute(
                select(certificates).where(
                    certificates.c.device_id.in_(list(template_ids.values()))
                )
            )
        }
    dev_rows, cert_rows, mapping, key_lines = [], [], [], []
    for i in range(devices):
        platform = PLATFORMS[i % len(PLATFORMS)]
        template = template_ids[platform]
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        device_id = f"dev-{run.lower()}-{i:05d}"
        serial = f"SN{run}{i:06d}"
        owner = i % users
        cert_serial = uuid.uuid4().hex
        row = dict(tdev[template])
        row.update(
            id=device_id,
            user_id=user_id(owner),
            serial_number=serial,
            cert_serial=cert_serial,
            public_key=public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            key_thumbprint=jwk_thumbprint(public),
            enrolled_at=now - timedelta(days=30),
            updated_at=now,
            last_checkin_at=now,
        )
        dev_rows.append(row)
        cert = dict(tcert[template])
        cert.update(
            serial=cert_serial,
            device_id=device_id,
            user_id=user_id(owner),
            key_thumbprint=row["key_thumbprint"],
        )
        cert_rows.append(cert)
        mapping.append((device_id, template))
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key_lines.append(
            json.dumps(
                {
                    "id": device_id,
                    "user": user_login(owner),
                    "user_index": owner,
                    "platform": platform,
                    "serial": serial,
                    "key": pem,
                }
            )
        )
    with engine.begin() as conn:
        for chunk in range(0, devices, 2000):
            conn.execute(insert(devices_t), dev_rows[chunk : chunk + 2000])
            conn.execute(insert(certificates), cert_rows[chunk : chunk + 2000])
        conn.execute(text("CREATE TEMP TABLE bench_map (new_id text, template_id text)"))
        conn.execute(
            text("INSERT INTO bench_map VALUES (:n, :t)"),
            [{"n": n, "t": t} for n, t in mapping],
        )
        conn.execute(
            text(
                "INSERT INTO posture_latest "
                "(device_id, seq, collected_at, received_at, posture, sources) "
                "SELECT m.new_id, p.seq, now(), now(), p.posture, p.sources "
                "FROM posture_latest p JOIN bench_map m ON m.template_id = p.device_id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO posture_history "
                "(device_id, slot, seq, collected_at, received_at, posture) "
                "SELECT m.new_id, p.slot, p.seq, now(), now(), p.posture "
                "FROM posture_history p JOIN bench_map m ON m.template_id = p.device_id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO compliance_state "
                "(device_id, state, outcome, reasons, policy_ids, evaluated_at) "
                "SELECT m.new_id, c.state, c.outcome, c.reasons, c.policy_ids, now() "
                "FROM compliance_state c JOIN bench_map m ON m.template_id = c.device_id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO rule_failures (device_id, policy_id, rule_id, first_failed_at) "
                "SELECT m.new_id, r.policy_id, r.rule_id, r.first_failed_at "
                "FROM rule_failures r JOIN bench_map m ON m.template_id = r.device_id"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    keys_file = workdir / "fleet.jsonl"
    keys_file.write_text("\n".join(key_lines) + "\n", encoding="utf-8")
    return Fleet(
        keys_file,
        devices,
        users,
        len(groups),
        len(member_rows),
        time.perf_counter() - t0,
        len(template_ids),
    )


def load_fleet(path: Path, every: int = 1, offset: int = 0) -> list[dict[str, Any]]:
    """The seeded devices (every ``every``-th from ``offset``), keys loaded."""
    from cryptography.hazmat.primitives import serialization

    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n % every != offset:
                continue
            item = json.loads(line)
            item["key"] = serialization.load_pem_private_key(item["key"].encode(), None)
            out.append(item)
    return out


_SHARES: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def fleet_share(path: str | Path, procs: int, proc: int) -> list[dict[str, Any]]:
    """Client process ``proc``'s share of the seeded devices, loaded once per process and
    per fleet file (a second pass seeds a new fleet in a new file)."""
    key = (str(path), procs, proc)
    if key not in _SHARES:
        _SHARES[key] = load_fleet(Path(path), procs, proc)
    return _SHARES[key]


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Http:
    """A keep-alive HTTP/1.1 client on one connection (``http.client``: ~10x less CPU per
    request than httpx), reconnecting once when the server closed the connection."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: Any = None

    def _connect(self) -> Any:
        import http.client

        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        import http.client

        for attempt in (0, 1):
            conn = self._conn or self._connect()
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                response = conn.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    self._conn = None
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")
