"""``posture signals``: the Shared Signals transmitter's streams and queue, for operators.

``posture signals streams`` lists every stream (receiver, status, delivery method and
endpoint, SETs pending / delivered / failed, the last error), two lines each.
``posture signals retry STREAM_ID`` queues a stream's failed SETs again once the receiver is
fixed (audited; the running servers send them at their next sweep).
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from posture_gateway.signals.store import SignalStore
from posture_gateway.signals.tables import ssf_deliveries
from posture_gateway.state import state

__all__ = ["signals_group"]


@click.group("signals")
def signals_group() -> None:
    """Shared Signals transmitter: streams and their SET queue."""


@signals_group.command("streams")
@with_appcontext
def list_streams() -> None:
    """Show every stream with its queue."""
    core = state().core
    with core.storage.unit_of_work() as uow:
        store = SignalStore(uow.conn, uow.dialect)
        streams = store.all_streams()
        counts = store.counts()
        errors = dict(
            uow.conn.execute(
                select(ssf_deliveries.c.stream_id, ssf_deliveries.c.last_error)
                .where(ssf_deliveries.c.last_error.is_not(None))
                .order_by(ssf_deliveries.c.id)
            ).all()
        )
    if not streams:
        click.echo("no streams")
    for stream in streams:
        delivery = stream.config.get("delivery", {})
        method = "push" if delivery.get("method") == "urn:ietf:rfc:8935" else "poll"
        n = counts.get(stream.stream_id, {})
        click.echo(
            f"{stream.stream_id}  receiver={stream.client_id}  status={stream.status}  "
            f"{method} {delivery.get('endpoint_url', '')}"
        )
        click.echo(
            f"    pending={n.get('pending', 0)}  delivered={n.get('delivered', 0)}  "
            f"failed={n.get('failed', 0)}"
            + (
                f"  last error: {errors[stream.stream_id][:200]}"
                if stream.stream_id in errors
                else ""
            )
        )


@signals_group.command("retry")
@click.argument("stream_id")
@click.option("--actor", default=None, help="Who asks (audit); default: the OS user.")
@with_appcontext
def retry(stream_id: str, actor: str | None) -> None:
    """Queue the stream's failed SETs again."""
    who = actor or f"cli:{getpass.getuser()}"
    core = state().core
    with core.storage.unit_of_work() as uow:
        store = SignalStore(uow.conn, uow.dialect)
        if store.get_stream(stream_id) is None:
            raise click.ClickException(f"no stream {stream_id!r}")
        queued = store.retry_failed(stream_id, datetime.now(UTC))
        uow.audit.record(who, "ssf.retry", f"ssf-stream:{stream_id}", "ok", {"queued": queued})
    click.echo(f"{queued} SET(s) queued again on stream {stream_id}")
