"""The SQL store's history reads, blacklist, schedules and per-day stats."""

from __future__ import annotations

import datetime as dt
from typing import Any, List, Optional, Sequence, Set

import sqlalchemy as sa

from smskit.errors import NotFoundError, StoreError
from smskit.store import rules as c
from smskit.store.base import BlacklistEntry, EventRecord, Schedule
from smskit.store.sql.driver import SqlBase, chunks
from smskit.store.sql.tables import (
    blacklist,
    events,
    messages,
    row_blacklist,
    row_event,
    row_schedule,
    schedule_row,
    schedules,
)

__all__ = ["SqlListsMixin"]

_m = messages.c


class SqlListsMixin(SqlBase):
    """History, blacklist, schedules and stats of :class:`smskit.store.sql.store.SqlStore`."""

    def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for the message, oldest first."""
        query = sa.select(events).where(events.c.message_id == message_id).order_by(events.c.id)
        with self._tx("history") as conn:
            return [row_event(r) for r in conn.execute(query).mappings()]

    def orphan_events(self, limit: int = 100) -> List[EventRecord]:
        """Status events that matched no message, newest first."""
        query = (
            sa.select(events)
            .where(events.c.message_id.is_(None), events.c.kind == c.KIND_STATUS)
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self._tx("orphan_events") as conn:
            return [row_event(r) for r in conn.execute(query).mappings()]

    def record_event(
        self,
        message_id: Optional[str],
        kind: str,
        detail: str,
        *,
        provider: Optional[str] = None,
    ) -> None:
        """Append a free-form event to a message's history (``NotFoundError`` if unknown)."""
        with self._tx("record_event", write=True) as conn:
            if message_id is not None and conn.execute(
                sa.select(_m.id).where(_m.id == message_id)
            ).first() is None:
                raise NotFoundError(f"no message {message_id!r}")
            self._event_row(conn, [{"message_id": message_id, "provider": provider,
                                    "kind": kind, "detail": detail}])

    # -- blacklist ----------------------------------------------------------------------------
    def is_blacklisted(self, phone: str) -> bool:
        """Whether the E.164 number is on the list."""
        return bool(self.blacklisted([phone]))

    def blacklisted(self, phones: Sequence[str]) -> Set[str]:
        """The subset of ``phones`` on the list (one query per 500 numbers)."""
        found: Set[str] = set()
        unique = list(dict.fromkeys(phones))
        with self._tx("blacklisted") as conn:
            driver = self._blacklisted_in
            if driver is not None:
                found.update(row[0] for row in driver.rows(conn, unique))
                return found
            for chunk in chunks(unique):
                query = sa.select(blacklist.c.phone).where(blacklist.c.phone.in_(chunk))
                found.update(conn.execute(query).scalars())
        return found

    def list_blacklist(self) -> List[BlacklistEntry]:
        """All entries, oldest first."""
        query = sa.select(blacklist).order_by(blacklist.c.created_at, blacklist.c.phone)
        with self._tx("list_blacklist") as conn:
            return [row_blacklist(r) for r in conn.execute(query).mappings()]

    # -- schedules ------------------------------------------------------------------------------
    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (a ``StoreError`` if the id exists)."""
        stored = c.normalise_schedule(schedule)
        with self._tx("add_schedule", write=True) as conn:
            if not self._insert_new(conn, schedules, schedule_row(stored)):
                raise StoreError(f"schedule {schedule.id!r} already exists")
        return stored

    def get_schedule(self, schedule_id: str) -> Optional[Schedule]:
        """A schedule by id."""
        with self._tx("get_schedule") as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id))
            found = row.mappings().first()
            return row_schedule(found) if found is not None else None

    def _schedules(self, what: str, query: sa.Select[Any]) -> List[Schedule]:
        s = schedules.c
        query = query.order_by(s.next_run_at.is_(None), s.next_run_at, s.created_at, s.id)
        with self._tx(what) as conn:
            return [row_schedule(r) for r in conn.execute(query).mappings()]

    def list_schedules(self, *, active_only: bool = False) -> List[Schedule]:
        """All schedules, by next run (ended ones last)."""
        query = sa.select(schedules)
        if active_only:
            query = query.where(schedules.c.active == sa.true())
        return self._schedules("list_schedules", query)

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; ``False`` if unknown."""
        with self._tx("remove_schedule", write=True) as conn:
            done = conn.execute(sa.delete(schedules).where(schedules.c.id == schedule_id))
            return bool(done.rowcount == 1)

    def due_schedules(self, now: dt.datetime) -> List[Schedule]:
        """Active schedules whose ``next_run_at`` <= ``now``, earliest first."""
        now = c.require_utc(now, "now")
        s = schedules.c
        return self._schedules("due_schedules", sa.select(schedules).where(
            s.active == sa.true(), s.next_run_at.is_not(None), s.next_run_at <= now))

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next: dt.datetime,
        new_next: Optional[dt.datetime],
        ran_at: dt.datetime,
    ) -> bool:
        """Compare-and-set of ``next_run_at``; ``True`` only for the caller that won."""
        expected_next = c.require_utc(expected_next, "expected_next")
        new_next = c.require_aware(new_next, "new_next")
        ran_at = c.require_utc(ran_at, "ran_at")
        s = schedules.c
        stmt = (
            sa.update(schedules)
            .where(s.id == schedule_id, s.next_run_at == expected_next, s.active == sa.true())
            .values(next_run_at=new_next, last_run_at=ran_at, runs=s.runs + 1,
                    active=new_next is not None)
        )
        with self._tx("advance_schedule", write=True) as conn:
            return bool(conn.execute(stmt).rowcount == 1)
