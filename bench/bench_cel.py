"""Benchmark: the two CEL implementations for Python, side by side on the same expressions.

``common-expression-language`` (import ``cel``, Rust core) against ``cel-python`` (import
``celpy``, pure Python), compiled once, evaluated many times, on what our rules look like:
the 3-clause boolean of FACTS.md, a list membership over a posture field, and a macro over
the managed apps. Also shown: the cost of our engine's memo hit for the same rule. The choice
is recorded in ``docs/decisions.md``.

Run: ``.venv/bin/python bench/bench_cel.py`` (needs ``cel-python`` installed: ``pip install
cel-python``; it is not a runtime dependency).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

EXPRESSIONS = {
    "3-clause boolean": (
        "posture.storage_encrypted && !posture.jailbroken && posture.passcode_min_length >= 6",
        {"storage_encrypted": True, "jailbroken": False, "passcode_min_length": 6},
    ),
    "build in list": (
        'posture.os_build in ["21A329", "21A340", "22A3354", "23A344"]',
        {"os_build": "24D60"},
    ),
    "exists() over apps": (
        'posture.managed_apps.exists(a, a.app_id == "com.example.vpn")',
        {"managed_apps": [{"app_id": "x"}, {"app_id": "com.example.vpn"}]},
    ),
}


def timed(fn: Callable[[], object], n: int) -> float:
    """Median µs per call (the harness's percentile)."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append((clock() - t0) / 1000)
    return h.percentile(samples, 50)


def main() -> int:
    import cel

    h.base_parser((__doc__ or "").split("\n\n")[0]).parse_args()
    metrics: dict[str, float] = {}

    try:
        import celpy
    except ImportError:
        print("cel-python is not installed: pip install cel-python")
        return 2
    env = celpy.Environment()
    print(f"{'expression':22s}{'cel (Rust)':>14s}{'cel-python':>14s}{'ratio':>8s}")
    for name, (source, posture) in EXPRESSIONS.items():
        rust = cel.compile(source)
        rust_ctx = {"posture": posture}
        assert rust.execute(rust_ctx) is True or name == "build in list"
        program = env.program(env.compile(source))
        py_ctx = {"posture": celpy.json_to_cel(posture)}
        program.evaluate(py_ctx)
        t_rust = timed(lambda r=rust, c=rust_ctx: r.execute(c), 20_000)
        t_py = timed(lambda p=program, c=py_ctx: p.evaluate(c), 2_000)
        print(f"{name:22s}{t_rust:>12.1f}µs{t_py:>12.1f}µs{t_py / t_rust:>7.0f}x")
        slug = name.split()[0].replace("-", "_")
        metrics[f"{slug}_rust_us"], metrics[f"{slug}_python_us"] = t_rust, t_py

    from mdm_core.policy.cel import compile_condition
    from mdm_core.posture.model import Platform, Posture

    condition = compile_condition(EXPRESSIONS["3-clause boolean"][0])
    posture = Posture(
        platform=Platform.IOS,
        collected_at=datetime(2026, 1, 1, tzinfo=UTC),
        storage_encrypted=True,
        jailbroken=False,
        passcode_min_length=6,
    )
    kwargs = {
        "platform": "ios",
        "ownership": "corporate",
        "user_id": "u",
        "groups": frozenset(),
        "now": datetime(2026, 1, 1, tzinfo=UTC),
    }
    condition.evaluate(posture, **kwargs)  # fills the memo
    hit = timed(lambda: condition.evaluate(posture, **kwargs), 20_000)
    print(f"{'engine memo hit':22s}{hit:>12.1f}µs   (same rule, values seen before)")
    metrics["engine_memo_hit_us"] = hit
    return h.emit("cel_implementations", metrics, {})  # a comparison: no target


if __name__ == "__main__":
    raise SystemExit(main())
