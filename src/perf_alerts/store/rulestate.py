"""State that history-based rules keep between cycles (`rules/history.py`), so a cycle reads and
computes only the points that arrived since the last one.

SQL only (the layer rule); the SQL both backends speak (`?` parameters, `ON CONFLICT … DO
UPDATE`). A row is (rule, params, part): `params` is a hash of the rule's parameters that shape
the state, so a changed rule finds no state and rebuilds it from history; `part` is -1 for a
state kept whole per rule (an anomaly rule's detector matrix) or a series id for a state kept
per series (a forecast rule's last fit, rewritten only when that series is refitted). `data` is
TEXT (base64 of numpy's `.npz`, or JSON): TEXT maps to both backends without a bytes type.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

if TYPE_CHECKING:
    from perf_alerts.store.backend import Connection

T = TypeVar("T")

RULESTATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rule_state (
    rule       TEXT NOT NULL,
    params     TEXT NOT NULL,
    part       INTEGER NOT NULL,
    at         REAL NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (rule, params, part)
);
"""


class RuleStateQueries:
    """Mixin of `Store` (uses its `con` for reads and `_write()` for transactions)."""

    if TYPE_CHECKING:  # provided by Store
        @property
        def con(self) -> Connection: ...

        def _write(self, exclusive: bool = True) -> AbstractContextManager[Connection]: ...

        def _retrying(self, fn: Callable[[], T], retry_for: float = 30.0) -> T: ...

    def rule_state_load(self, rule: str, params: str) -> dict[int, tuple[float, str]]:
        """{part: (at, data)} of `rule` under the parameter hash `params` (empty: none kept)."""
        rows = self.con.execute("SELECT part, at, data FROM rule_state WHERE rule = ? AND params = ?",
                                (rule, params)).fetchall()
        return {int(p): (float(at), str(d)) for p, at, d in rows}

    def rule_state_save(self, rule: str, params: str, parts: Iterable[tuple[int, float, str]],
                        drop: Iterable[int] = (), fresh: bool = False) -> None:
        """Write (part, at, data) rows of `rule`; delete the parts in `drop`; `fresh`: first delete
        every row the rule kept under other parameters (a changed rule's stale state)."""
        rows = [(rule, params, int(p), float(at), str(d)) for p, at, d in parts]
        gone = [(rule, params, int(p)) for p in drop]

        def write() -> None:
            with self._write(exclusive=False) as con:
                if fresh:
                    con.execute("DELETE FROM rule_state WHERE rule = ? AND params <> ?", (rule, params))
                if gone:
                    con.executemany("DELETE FROM rule_state WHERE rule = ? AND params = ? AND part = ?", gone)
                if rows:
                    con.executemany(
                        "INSERT INTO rule_state (rule, params, part, at, data) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (rule, params, part) DO UPDATE SET at = excluded.at, data = excluded.data",
                        rows)

        self._retrying(write)

    def rule_state_clear(self, rule: str | None = None) -> None:
        """Forget the kept state of `rule` (every rule: None); the next cycle rebuilds it."""
        def write() -> None:
            with self._write(exclusive=False) as con:
                if rule is None:
                    con.execute("DELETE FROM rule_state")
                else:
                    con.execute("DELETE FROM rule_state WHERE rule = ?", (rule,))

        self._retrying(write)
