"""Benchmark: policy evaluation with and without the decision cache, at ~30 and ~300 rules.

The ~30-rule set and the inputs are bench_policy.py's (shipped policies + an engineering
policy; 2,000 devices, mixed postures). The ~300-rule set adds 25 copies of the engineering
policy (11 rules each) assigned to a group every user is in. Each device asks again and again
(logins between two check-ins): after one pass every question is a cache hit.

Targets: median < 20 µs and p99 < 100 µs per decision (p99 < 100 µs at 300 rules with the
cache). Run: ``.venv/bin/python bench/bench_decision_cache.py [-n N]``.

``measure(policies, inputs, n, cache)`` is the one function a rewritten bench needs.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_policy import ENGINEERING, NOW, _percentiles, build_set, make_inputs  # noqa: E402

from mdm_core.policy.compiled import CompiledPolicySet  # noqa: E402
from mdm_core.policy.decision_cache import DecisionCache  # noqa: E402
from mdm_core.policy.engine import evaluate  # noqa: E402
from mdm_core.policy.loader import load_policy_directory  # noqa: E402
from mdm_core.policy.model import EvaluationInput  # noqa: E402

COPIES = 25


def measure(
    policies: CompiledPolicySet,
    inputs: Sequence[EvaluationInput],
    n: int,
    cache: DecisionCache | None,
) -> tuple[float, float, float, float]:
    """``(median µs, p99 µs)`` wall clock, then the same in thread CPU time, per decision over
    ``n`` decisions cycling through ``inputs`` (one warm-up pass first), through ``cache`` if
    given."""
    decide = evaluate if cache is None else cache.evaluate
    for request in inputs:
        decide(request, policies)
    samples: list[int] = []
    cpu: list[int] = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    gc.disable()
    try:
        for i in range(n):
            request = inputs[i % len(inputs)]
            c0 = cpu_clock()
            t0 = clock()
            decide(request, policies)
            t1 = clock()
            cpu.append(cpu_clock() - c0)
            samples.append(t1 - t0)
    finally:
        gc.enable()
    median, p99, _ = _percentiles(samples)
    c_median, c_p99, _ = _percentiles(cpu)
    return median, p99, c_median, c_p99


def big_set(tmp: Path) -> CompiledPolicySet:
    """The bench_policy set plus COPIES engineering policies (~300 rules)."""
    build_set(tmp)  # copies the shipped policies into tmp/policies
    for i in range(COPIES):
        text = ENGINEERING.replace("id: engineering", f"id: engineering-{i}")
        text = text.replace("id: eng-", f"id: eng{i}-")
        (tmp / "policies" / "compliance" / f"engineering-{i}.yaml").write_text(text)
    return load_policy_directory(tmp / "policies", now=NOW)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30_000, help="timed decisions per case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        sets = {"~30": build_set(Path(a)), "~300": big_set(Path(b))}
    inputs = make_inputs(2_000)
    print(f"machine: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| rules | cache | median µs | p99 µs | CPU median µs | CPU p99 µs | hit rate |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    ok = True
    for label, policies in sets.items():
        for cached in (False, True):
            cache = DecisionCache() if cached else None
            median, p99, c_median, c_p99 = measure(policies, inputs, args.n, cache)
            hits = "-"
            if cache is not None:
                s = cache.stats()
                hits = f"{100 * s.hits / max(1, s.hits + s.misses):.0f} %"
            print(
                f"| {policies.rule_count()} ({label}) | {'yes' if cached else 'no'} | "
                f"{median:.1f} | {p99:.1f} | {c_median:.1f} | {c_p99:.1f} | {hits} |"
            )
            if cached or label == "~30":
                ok = ok and p99 < 100.0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
