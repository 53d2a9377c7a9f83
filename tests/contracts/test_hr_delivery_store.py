"""The HR delivery store on SQLite and PostgreSQL: records round-trip, a second copy of a
delivery is refused whole, listing filters and orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mdm_core.storage.sql.database import Database
from posture_gateway.hr.store import DeliveryExists, DeliveryRecord, HrDeliveryStore
from posture_gateway.hr.tables import hr_deliveries

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _record(
    key: str, seq: int, outcome: str = "offboarding_started", **kw: object
) -> DeliveryRecord:
    return DeliveryRecord(
        source=str(kw.pop("source", "bamboohr")),
        delivery_key=key,
        seq=seq,
        body_sha256="a" * 64,
        employee_ref=f"emp-{seq}",
        event="offboard",
        outcome=outcome,
        received_at=kw.pop("received_at", AT),  # type: ignore[arg-type]
        user_id=kw.pop("user_id", f"u-{seq}"),  # type: ignore[arg-type]
        job_id="j" * 32,
        source_ref=f"bamboohr:{seq}:status:inactive",
        effective_at=AT + timedelta(days=3),
        detail={"reason": "status Inactive"},
    )


def _count(database: Database) -> int:
    with database.engine.connect() as conn:
        return len(conn.execute(hr_deliveries.select()).all())


def test_round_trip_and_duplicates(database: Database) -> None:
    with database.transaction() as conn:
        store = HrDeliveryStore(conn)
        assert store.get("bamboohr", "k1") == []
        store.add([_record("k1", 0), _record("k1", 1, "unmatched", user_id=None)])
        store.add([])
    with database.transaction() as conn:
        got = HrDeliveryStore(conn).get("bamboohr", "k1")
    assert [r.seq for r in got] == [0, 1]
    assert got[0] == _record("k1", 0)
    assert got[1].user_id is None and got[1].outcome == "unmatched"
    assert got[0].to_json()["effective_at"] == (AT + timedelta(days=3)).isoformat()
    # The same key under another source is another delivery.
    with database.transaction() as conn:
        assert HrDeliveryStore(conn).get("generic", "k1") == []
    # A second copy: refused whole (one new seq beside a taken one inserts nothing).
    with pytest.raises(DeliveryExists):
        with database.transaction() as conn:
            HrDeliveryStore(conn).add([_record("k1", 2), _record("k1", 1)])
    assert _count(database) == 2


def test_list_filters_newest_first(database: Database) -> None:
    with database.transaction() as conn:
        store = HrDeliveryStore(conn)
        store.add([_record("old", 0, received_at=AT - timedelta(hours=1))])
        store.add([_record("new", 0, "unmatched", user_id=None)])
        store.add([_record("gen", 0, source="generic", user_id="u-x")])
    with database.transaction() as conn:
        store = HrDeliveryStore(conn)
        assert [r.delivery_key for r in store.list()][-1] == "old"
        assert [r.delivery_key for r in store.list(outcome="unmatched")] == ["new"]
        assert [r.delivery_key for r in store.list(source="generic")] == ["gen"]
        assert [r.delivery_key for r in store.list(user_id="u-x")] == ["gen"]
        assert len(store.list(limit=1)) == 1
        assert store.list(outcome="ignored") == []


def test_purge_deletes_only_what_is_older_oldest_first(database: Database) -> None:
    with database.transaction() as conn:
        store = HrDeliveryStore(conn)
        for day in range(5):  # one record per day, on another source every other day
            store.add(
                [
                    _record(
                        f"d{day}",
                        0,
                        source="generic" if day % 2 else "bamboohr",
                        received_at=AT + timedelta(days=day),
                    )
                ]
            )
    cutoff = AT + timedelta(days=3)
    with database.transaction() as conn:  # a batch smaller than what is due: the oldest go
        assert HrDeliveryStore(conn).purge(cutoff, limit=2) == 2
    with database.transaction() as conn:
        store = HrDeliveryStore(conn)
        assert store.get("bamboohr", "d0") == [] and store.get("generic", "d1") == []
        assert [r.delivery_key for r in store.get("bamboohr", "d2")] == ["d2"]
        assert store.purge(cutoff) == 1  # d2; d3 was received AT the cutoff, not before it
        assert store.purge(cutoff) == 0
        left = sorted(r.delivery_key for r in store.list(limit=10))
    assert left == ["d3", "d4"]
