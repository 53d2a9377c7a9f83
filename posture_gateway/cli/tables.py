"""The CLI's count tables: one row per outcome with its count and the first few names."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.markup import escape
from rich.table import Table

__all__ = ["count_table"]


def count_table(title: str, rows: Iterable[tuple[str, Sequence[str]]], shown: int) -> Table:
    """A table of ``(label, names)`` rows: the count and at most ``shown`` names, then
    ``(+N)`` for the rest (names escaped: directory data is not rich markup)."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("which", overflow="fold")
    for label, items in rows:
        more = f" (+{len(items) - shown})" if len(items) > shown else ""
        table.add_row(label, str(len(items)), escape(", ".join(items[:shown]) + more))
    return table
