"""The due tickets and the alert ledger in bulk, in the driver's own terms: a catch-up after
downtime reads 100k tickets and writes 160k ledger rows in one transaction, so neither goes
through ORM objects or per-value type processing. Times are naive UTC here, as both stores
hold them (`models.db.UtcDateTime`): SQLite as text in SQLAlchemy's format, PostgreSQL as
timestamps.

A ticket's next alert time is its row in `ticketalarm` (models/ticket.py): the due tickets are
found there, and rearming writes that narrow row, not the wide ticket row.

Only the inserter of a ledger row sends its alert. On PostgreSQL the due tickets are locked
(FOR UPDATE SKIP LOCKED, their ticket and alarm rows) and the ledger insert is ON CONFLICT DO
NOTHING RETURNING: what it returns is what this firing won. SQLite has one writer at a time:
`hold` takes the write lock before the due tickets and their ledger are read, so what is read
is what is written over, every due point is this firing's, and the ledger ids follow the
largest one; a duplicate would fail the whole transaction, never send twice."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple

from sqlmodel import Session

from models.sla.policy import AlertKind

LEDGER_CHUNK = 4000  # ledger rows a PostgreSQL statement: 6 values each
ROOMY_CACHE_KIB = 16384  # SQLite's page cache during a big firing (its default is 2 MiB)
DENSE = 2  # read the table in id order when at least 1/DENSE of its id range is due


class DueTicket(NamedTuple):
    """The columns firing reads of a due ticket; times naive UTC."""

    id: int
    number: str
    squad_id: int
    owner_id: int | None
    led_by: int | None
    category_code: str
    urgency: str
    state: str
    cycle: int
    created_at: datetime
    resolved_at: datetime | None
    first_response_at: datetime | None
    response_due: datetime | None
    handling_due: datetime | None
    handling_started: datetime | None
    plan_required: bool
    plan_target: datetime | None
    plan_due: datetime | None


_COLUMNS = ", ".join(f"t.{name}" for name in DueTicket._fields)
# the due tickets with their alarm: what `due` reads, and what it locks on PostgreSQL
_DUE = "ticketalarm a JOIN ticket t ON t.id = a.ticket_id"
Claim = tuple[DueTicket, str, AlertKind, datetime]  # ticket, deadline, level, due
_PLAIN = {level: level.value for level in AlertKind}  # a level as the driver binds it
_parse = datetime.fromisoformat
_new = tuple.__new__  # a row's values straight into the named tuple, all 18 of them
# the alarm table's indexes as created (its key is the table itself, not among them)
_ALARM_INDEXES = (
    "SELECT name, sql FROM sqlite_master"
    " WHERE type = 'index' AND tbl_name = 'ticketalarm' AND sql IS NOT NULL ORDER BY name"
)


def _from_text(raw: Sequence[Any], texts: dict[datetime, str]) -> DueTicket:
    """A SQLite row: its times read from SQLAlchemy's text form (naive UTC). The text of
    each deadline goes into `texts`, so the ledger stores a due time as it was read rather
    than writing it out again."""
    (
        tid,
        number,
        squad_id,
        owner_id,
        led_by,
        category,
        urgency,
        state,
        cycle,
        created,
        resolved,
        replied,
        response_due,
        handling_due,
        started,
        plan_required,
        plan_target,
        plan_due,
    ) = raw
    reply_by = handling_by = target = planned = None
    if response_due:
        reply_by = _parse(response_due)
        texts[reply_by] = response_due
    if handling_due:
        handling_by = _parse(handling_due)
        texts[handling_by] = handling_due
    if plan_target:
        target = _parse(plan_target)
        texts[target] = plan_target
    if plan_due:
        planned = _parse(plan_due)
        texts[planned] = plan_due
    return _new(
        DueTicket,
        (
            tid,
            number,
            squad_id,
            owner_id,
            led_by,
            category,
            urgency,
            state,
            cycle,
            _parse(created),
            resolved and _parse(resolved),
            replied and _parse(replied),
            reply_by,
            handling_by,
            started and _parse(started),
            plan_required,
            target,
            planned,
        ),
    )


class AlertStore:
    """Reads and writes of one firing, on the session's own connection and transaction."""

    def __init__(self, session: Session) -> None:
        self.connection = session.connection()
        self.postgres = self.connection.dialect.name == "postgresql"
        # SQLite: the stored text of the deadlines of the tickets last read, by their time
        self._texts: dict[datetime, str] = {}
        self.dense = False  # SQLite: `due` reads the table in id order (most of it is due)

    # --- times ---------------------------------------------------------------------------
    def stored(self, value: datetime | None) -> Any:
        """A naive UTC time as the store keeps it."""
        if value is None or self.postgres:
            return value
        return value.isoformat(" ", "microseconds")

    def _in(self, ids: Sequence[int]) -> tuple[str, tuple[Any, ...]]:
        if self.postgres:
            return "= ANY(%s)", (list(ids),)
        return f"IN ({','.join('?' * len(ids))})", tuple(ids)

    def _mark(self) -> str:
        return "%s" if self.postgres else "?"

    # --- the transaction -----------------------------------------------------------------
    def hold(self) -> None:
        """SQLite: take the write lock now (a write that changes nothing), so no other
        scheduler records an alert between what this firing reads and what it writes.
        PostgreSQL locks the due tickets themselves (`due_ids`)."""
        if not self.postgres:
            self.connection.exec_driver_sql("UPDATE alertrecord SET id = id WHERE 0")

    @contextmanager
    def roomy(self) -> Iterator[None]:
        """SQLite, a big firing: a page cache that holds the tickets' next-alert index and
        the ledger's pages, so each write does not read its page again; and when most of the
        alarm table is due (`due` read it in order), the table's own indexes are dropped and
        built again once at the end, within the transaction, rather than kept row by row:
        rearming 100k alarms costs about a third as much that way. Then back as before."""
        if self.postgres:
            yield
            return
        run = self.connection.exec_driver_sql
        before = run("PRAGMA cache_size").scalar()
        run(f"PRAGMA cache_size = -{ROOMY_CACHE_KIB}")
        rebuilt: list[tuple[str, str]] = []
        if self.dense:
            rebuilt = [(str(name), str(sql)) for name, sql in run(_ALARM_INDEXES)]
            for name, _ in rebuilt:
                run(f'DROP INDEX "{name}"')
        try:
            yield
            for _, sql in rebuilt:
                run(sql)  # on a failure the firing's rollback brings them back instead
        finally:
            run(f"PRAGMA cache_size = {int(before or 0)}")

    # --- reading -------------------------------------------------------------------------
    def due(
        self, now: datetime, chunk: int, limit: int | None = None
    ) -> tuple[int, Iterator[list[DueTicket]]]:
        """How many tickets have an alert due at `now` (naive UTC), and those tickets, a
        chunk at a time in id order, each chunk read when it is asked for (so after `hold`),
        still due then. When most of the table is due (a catch-up after downtime), SQLite
        reads the table in id order instead of looking each due ticket up."""
        if not self.postgres and limit is None:
            # One statement, so one snapshot: read apart, another scheduler on the same file
            # could empty the table between the count and the bounds.
            count, low, high = self.connection.exec_driver_sql(
                "SELECT (SELECT count(*) FROM ticketalarm WHERE next_alert_at <= ?),"
                " (SELECT min(ticket_id) FROM ticketalarm),"
                " (SELECT max(ticket_id) FROM ticketalarm)",
                (self.stored(now),),
            ).one()
            if count and low is not None and count * DENSE >= high - low + 1:
                self.dense = True
                return count, self._in_order(now, chunk)
        ids = self.due_ids(now, limit)
        return len(ids), (
            self.tickets(ids[lo : lo + chunk], now) for lo in range(0, len(ids), chunk)
        )

    def _in_order(self, now: datetime, chunk: int) -> Iterator[list[DueTicket]]:
        last = 0
        while True:
            found = self.connection.exec_driver_sql(
                f"SELECT {_COLUMNS} FROM {_DUE} WHERE a.ticket_id > ? AND a.next_alert_at <= ?"
                " ORDER BY a.ticket_id LIMIT ?",
                (last, self.stored(now), chunk),
            ).cursor.fetchall()
            if not found:
                return
            last = found[-1][0]
            yield self._read(found)

    def due_ids(self, now: datetime, limit: int | None = None) -> list[int]:
        """The tickets with an alert due at `now` (naive UTC), the `limit` earliest if given;
        on PostgreSQL their ticket and alarm rows are locked for this transaction, and a
        ticket another scheduler or a handler holds is skipped."""
        if self.postgres:
            sql = f"SELECT a.ticket_id FROM {_DUE} WHERE a.next_alert_at <= %s"
        else:
            sql = "SELECT a.ticket_id FROM ticketalarm a WHERE a.next_alert_at <= ?"
        params: tuple[Any, ...] = (self.stored(now),)
        if limit is not None:
            sql += f" ORDER BY a.next_alert_at LIMIT {int(limit)}"
        if self.postgres:
            sql += " FOR UPDATE OF t, a SKIP LOCKED"
        found = [row[0] for row in self.connection.exec_driver_sql(sql, params).cursor.fetchall()]
        found.sort()
        return found

    def tickets(self, ids: Sequence[int], now: datetime) -> list[DueTicket]:
        """These tickets, those still due (another scheduler may have fired one since)."""
        where, params = self._in(ids)
        sql = (
            f"SELECT {_COLUMNS} FROM {_DUE} WHERE a.ticket_id {where}"
            f" AND a.next_alert_at <= {self._mark()} ORDER BY a.ticket_id"
        )
        found = self.connection.exec_driver_sql(sql, (*params, self.stored(now))).cursor.fetchall()
        return list(map(DueTicket._make, found)) if self.postgres else self._read(found)

    def _read(self, found: Sequence[Any]) -> list[DueTicket]:
        texts = self._texts
        texts.clear()
        return list(map(_from_text, found, repeat(texts)))

    def fired(self, tickets: Sequence[DueTicket]) -> dict[int, set[tuple[str, str]]]:
        """The (deadline, level) pairs already in the ledger for each ticket's cycle; a
        ticket with none is left out."""
        cycles = {t.id: t.cycle for t in tickets}
        fired: dict[int, set[tuple[str, str]]] = {}
        if not cycles:
            return fired
        low, high = min(cycles), max(cycles)
        if not self.postgres and len(cycles) * DENSE >= high - low + 1:
            # most of their id range: one walk along the ledger's key, not a lookup each
            where, params = "BETWEEN ? AND ?", (low, high)
        else:
            where, params = self._in(list(cycles))
        sql = f"SELECT ticket_id, deadline, level, cycle FROM alertrecord WHERE ticket_id {where}"
        found = self.connection.exec_driver_sql(sql, params).cursor.fetchall()
        for tid, deadline, level, cycle in found:
            if cycles.get(tid) == cycle:
                keys = fired.get(tid)
                if keys is None:
                    keys = fired[tid] = set()
                keys.add((deadline, level))
        return fired

    def descriptions(self, ids: list[int]) -> dict[int, str]:
        where, params = self._in(ids)
        sql = f"SELECT id, description FROM ticket WHERE id {where}"
        return dict(self.connection.exec_driver_sql(sql, params).cursor.fetchall())

    # --- writing -------------------------------------------------------------------------
    def claim(self, claims: Sequence[Claim], now: datetime) -> list[int | None]:
        """Insert the ledger rows of these alerts, fired at `now` (naive UTC); returns, in
        their order, the ledger id of each this firing inserted, None where another
        scheduler had inserted it first (only the inserter sends). SQLite: under `hold`, all
        of them, numbered after the largest id. PostgreSQL: ON CONFLICT DO NOTHING
        RETURNING."""
        if not claims:
            return []
        if self.postgres:
            return self._claim_returning(claims, now)
        fired_at = self.stored(now)
        last = self.connection.exec_driver_sql("SELECT max(id) FROM alertrecord").scalar()
        first = int(last or 0) + 1
        # a due time is a deadline of the ticket, as read (`_from_text`), or written out once
        texts = self._texts
        rows = [
            (
                first + index,
                ticket.id,
                deadline,
                _PLAIN[level],
                ticket.cycle,
                texts.get(due) or texts.setdefault(due, due.isoformat(" ", "microseconds")),
                fired_at,
            )
            for index, (ticket, deadline, level, due) in enumerate(claims)
        ]
        self.connection.exec_driver_sql(
            "INSERT INTO alertrecord (id, ticket_id, deadline, level, cycle, due_at, fired_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return list(range(first, first + len(rows)))

    def _claim_returning(self, claims: Sequence[Claim], now: datetime) -> list[int | None]:
        won: dict[tuple[int, str, str], int] = {}
        for lo in range(0, len(claims), LEDGER_CHUNK):
            chunk = claims[lo : lo + LEDGER_CHUNK]
            values = ",".join(["(%s,%s,%s,%s,%s,%s)"] * len(chunk))
            sql = (
                "INSERT INTO alertrecord (ticket_id, deadline, level, cycle, due_at, fired_at)"
                f" VALUES {values} ON CONFLICT DO NOTHING"
                " RETURNING ticket_id, deadline, level, id"
            )
            params: list[Any] = []
            for ticket, deadline, level, due in chunk:
                params += (ticket.id, deadline, _PLAIN[level], ticket.cycle, due, now)
            found = self.connection.exec_driver_sql(sql, tuple(params)).cursor.fetchall()
            for tid, deadline, level, ledger_id in found:
                won[(tid, deadline, level)] = ledger_id
        return [
            won.get((ticket.id, deadline, _PLAIN[level])) for ticket, deadline, level, _ in claims
        ]

    def set_next(self, nexts: Mapping[int, datetime | None]) -> None:
        """Write the next alert time (naive UTC) of tickets that were due, so have an alarm
        row, by ticket id; a ticket with none pending (None) loses its row."""
        mark = self._mark()
        if self.postgres:
            armed: list[tuple[Any, int]] = [
                (at, tid) for tid, at in nexts.items() if at is not None
            ]
        else:
            text = datetime.isoformat
            armed = [
                (text(at, " ", "microseconds"), tid) for tid, at in nexts.items() if at is not None
            ]
        if armed:
            sql = f"UPDATE ticketalarm SET next_alert_at = {mark} WHERE ticket_id = {mark}"
            self.connection.exec_driver_sql(sql, armed)
        done = [(tid,) for tid, at in nexts.items() if at is None]
        if done:
            sql = f"DELETE FROM ticketalarm WHERE ticket_id = {mark}"
            self.connection.exec_driver_sql(sql, done)
