"""The benchmark harness's pure helpers, and every bench script's command line.

Benchmarks are not timed tests: nothing here measures anything. It checks that the JSON
result line, the percentiles and the target verdicts are right (a wrong verdict would make
the benchmark lie), that the report renders, and that each bench script starts and parses
``--help`` (its options, ``--quick`` and ``--relaxed`` among them).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import _harness as h  # noqa: E402

SCRIPTS = ["bench_policy.py", "bench_checkin.py", "bench_decision.py", "bench_oidc_flow.py"]
#: Every other bench script: each at least starts (its imports hold) and answers --help.
OTHER_SCRIPTS = sorted(p.name for p in BENCH.glob("bench_*.py") if p.name not in SCRIPTS)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [float(x) for x in range(1, 101)]  # 1..100
    assert h.percentile(values, 50) == pytest.approx(50.5)
    assert h.percentile(values, 99) == pytest.approx(99.01)
    assert h.percentile(values, 0) == 1.0
    assert h.percentile(values, 100) == 100.0
    assert h.percentile([7.0], 99) == 7.0
    assert math.isnan(h.percentile([], 50))
    assert h.percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of the input does not matter


def test_summarize_reports_every_field_and_empty_is_nan() -> None:
    s = h.summarize([1.0, 2.0, 3.0, 4.0])
    assert s["count"] == 4 and s["mean"] == 2.5 and s["max"] == 4.0 and s["p50"] == 2.5
    empty = h.summarize([])
    assert empty["count"] == 0 and math.isnan(empty["p99"])


def test_targets_min_and_max_and_missing_metric_is_not_met() -> None:
    targets = {"rate": {"min": 100.0}, "p99": {"max": 10.0}}
    assert h.check_targets({"rate": 100.0, "p99": 10.0}, targets)
    assert not h.check_targets({"rate": 99.9, "p99": 1.0}, targets)
    assert not h.check_targets({"rate": 500.0, "p99": 10.1}, targets)
    assert not h.check_targets({"rate": 500.0}, targets)  # a missing metric never passes
    assert not h.check_targets({"rate": "not available", "p99": 1.0}, targets)
    assert not h.check_targets({"rate": float("nan"), "p99": 1.0}, targets)
    assert not h.check_targets({"rate": True, "p99": 1.0}, targets)  # a bool is no number


def test_result_line_is_one_json_object_with_exactly_the_four_keys() -> None:
    line = h.result_line(
        "decision",
        {"rate": 2100.123456, "p99": float("nan"), "nested": {"x": 1.0}},
        {"rate": {"min": 2000.0}},
    )
    assert "\n" not in line
    record = json.loads(line)
    assert list(record) == ["bench", "metrics", "targets", "met"]
    assert record["bench"] == "decision"
    assert record["metrics"]["rate"] == 2100.1235  # rounded
    assert record["metrics"]["p99"] is None  # NaN is not valid JSON: null
    assert record["targets"] == {"rate": {"min": 2000.0}}
    assert record["met"] is True
    assert json.loads(h.result_line("x", {"rate": 1.0}, {"rate": {"min": 2.0}}))["met"] is False


def test_emit_prints_the_verdicts_then_the_json_line_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = h.emit("policy", {"median_us": 25.0}, {"median_us": {"max": 20.0}})
    out = capsys.readouterr().out.strip().splitlines()
    assert status == 1  # missed: make bench shows it
    assert "MISSED" in "\n".join(out[:-1])
    last = json.loads(out[-1])
    assert last["bench"] == "policy" and last["met"] is False
    assert h.emit("policy", {"median_us": 5.0}, {"median_us": {"max": 20.0}}) == 0


def test_load_row_and_client_bound_flag() -> None:
    load = h.Load("decision", "closed", 200, 2.0, [1.0, 2.0, 3.0], 0, "", [40.0, 90.0])
    assert load.rate == 100.0
    assert load.client_bound  # one client process above 85 % of a core
    assert len(load.row()) == len(h.Load.COLUMNS)
    assert not h.Load("d", "closed", 1, 1.0, [1.0], 0, "", [10.0]).client_bound
    h.print_table("t", h.Load.COLUMNS, [load.row()])  # renders


def test_the_seeded_group_structure_is_nested_three_deep() -> None:
    groups, nesting = h._groups()
    parent = {}
    for g, member, kind in nesting:
        assert kind == "group"
        parent.setdefault(member, []).append(g)
    team = next(g for g, _ in groups if g.endswith("-team0"))
    dept = parent[team][0]
    assert {p for p in parent[dept]} >= {"g-staff"}
    division = next(p for p in parent[dept] if p != "g-staff")
    assert division not in parent  # team -> department -> division: three levels


def _help(script: str) -> str:
    """``bench/SCRIPT --help`` (fails the test when the script does not even start: a bench
    that imports a helper that moved fails here, not on the night it is run)."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_bench_script_parses_help_with_quick_and_relaxed(script: str) -> None:
    out = _help(script)
    assert "--quick" in out and "--relaxed" in out


@pytest.mark.parametrize("script", OTHER_SCRIPTS)
def test_every_other_bench_script_starts(script: str) -> None:
    assert "usage" in _help(script).lower()
