"""Benchmark: the stale-posture sweep over a realistic fleet on durable PostgreSQL.

The harness seeds 20,000 enrolled devices (``--quick``: 2,000) with their posture, compliance
state and owners (:func:`_harness.seed`). Then, in-process, with the shipped policies:

1. **idle sweep**: nothing is stale (every report is recent): the cost the sweep adds every
   30 s to a healthy fleet (one index range query that returns nothing), median of 20;
2. **silent 10 %**: every tenth device's latest report is moved two hours back; sweeps of 500
   run back to back until none blocks anything: devices blocked (verdict recorded,
   ``compliance.changed``, ``end_device_access``) per second, and the time of one page.

Targets: idle sweep <= 50 ms; >= 17 blocked devices/s, i.e. a full 500-device page inside
the 30 s interval (each device is its own durable unit of work: one commit, one fsync).
Run: ``make bench-stale-sweep`` (``BENCH_ARGS=--quick`` for a smoke run).
Ends with one JSON line: ``{"bench", "metrics", "targets", "met"}``.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import _harness as h  # noqa: E402
from sqlalchemy import select, update  # noqa: E402

from mdm_core.policy.staleness import StaleSweep  # noqa: E402
from mdm_core.storage.sql.tables import posture_latest  # noqa: E402


def main() -> int:
    args = h.base_parser(__doc__.splitlines()[0]).parse_args()
    devices = 2_000 if args.quick else 20_000
    with h.Services(redis=False) as services, h.workdir("posture-bench-stale-") as workdir:
        db_url = h.fresh_database(services.server_url)
        url = "http://127.0.0.1:9"
        app = h.build_app(h.server_env(db_url, workdir / "data", url, None))
        try:
            fleet = h.seed(app, url, workdir, devices=devices, users=max(devices // 2, 100))
            core = app.extensions["posture"].core
            sweep = StaleSweep(core.storage, core.policies.current, batch=500)
            idle = []
            for _ in range(20):
                t0 = time.perf_counter()
                result = sweep.sweep()
                idle.append((time.perf_counter() - t0) * 1000)
                assert not result.blocked, result
            with core.database.engine.begin() as conn:
                rows = conn.execute(
                    select(posture_latest.c.device_id).order_by(posture_latest.c.device_id)
                ).all()
                silent = [r.device_id for r in rows[::10]]
                old = datetime.now(UTC) - timedelta(hours=2)
                for i in range(0, len(silent), 500):
                    conn.execute(
                        update(posture_latest)
                        .where(posture_latest.c.device_id.in_(silent[i : i + 500]))
                        .values(received_at=old, collected_at=old)
                    )
            pages: list[float] = []
            blocked = 0
            t0 = time.perf_counter()
            while True:
                p0 = time.perf_counter()
                result = sweep.sweep()
                pages.append(time.perf_counter() - p0)
                blocked += len(result.blocked)
                if not result.blocked and result.examined < sweep.batch:
                    break
            elapsed = time.perf_counter() - t0
        finally:
            app.extensions["posture"].core.close()
    metrics = {
        "devices": devices,
        "fleet": fleet.describe(),
        "silent": len(silent),
        "blocked": blocked,
        "idle_sweep_ms_median": round(statistics.median(idle), 2),
        "blocked_per_s": round(blocked / elapsed, 1),
        "page_of_500_s_max": round(max(pages), 3),
        "sweeps": len(pages),
        "database": services.label,
        "machine": h.machine_line(),
        "note": "noisy, shared machine",
    }
    h.print_table(
        "stale-posture sweep",
        ["metric", "value"],
        [[k, v] for k, v in metrics.items() if k not in ("fleet", "machine")],
    )
    targets = {"idle_sweep_ms_median": {"max": 50}, "blocked_per_s": {"min": 17}}
    assert blocked == len(silent), (blocked, len(silent))
    return h.emit("stale_sweep", metrics, targets)


if __name__ == "__main__":
    sys.exit(main())
