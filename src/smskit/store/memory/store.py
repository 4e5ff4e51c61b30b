"""An in-memory :class:`~smskit.store.base.Store`: fast, thread-safe, gone when the process ends.

Meant for tests (yours and ours) and for trying smskit out; every operation holds one lock,
so it gives the same guarantees as the SQL store inside a single process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attrs

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import (
    Direction,
    InboundMessage,
    Message,
    SendResult,
    State,
    StatusEvent,
    apply_status,
    utcnow,
)
from smskit.store import rules as c
from smskit.store.analytics import Link
from smskit.store.base import (
    KIND_REROUTED,
    AddOutcome,
    ApplyOutcome,
    BatchInfo,
    BlacklistEntry,
    ClaimedAdd,
    EventRecord,
    InboundOutcome,
    InsertClaim,
    Requeue,
    Schedule,
    Store,
)
from smskit.store.memory.analytics import MemoryAnalyticsMixin
from smskit.store.memory.outreach import MemoryOutreachMixin

__all__ = ["MemoryStore"]

log = logging.getLogger(__name__)

_PidKey = Tuple[str, str]


class MemoryStore(MemoryOutreachMixin, MemoryAnalyticsMixin, Store):
    """A :class:`~smskit.store.base.Store` kept in dictionaries behind one lock.

    Short links, clicks and the dashboard's aggregates: :class:`MemoryAnalyticsMixin`.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._messages: Dict[str, Message] = {}
        self._by_key: Dict[str, str] = {}
        self._by_pid: Dict[_PidKey, str] = {}
        self._by_reply: Dict[_PidKey, str] = {}
        self._batches: Dict[str, BatchInfo] = {}
        self._events: List[EventRecord] = []
        self._blacklist: Dict[str, BlacklistEntry] = {}
        self._schedules: Dict[str, Schedule] = {}
        self._init_outreach()
        self._links: Dict[str, Link] = {}
        self._clicks: List[Any] = []

    def __repr__(self) -> str:
        return f"MemoryStore(messages={len(self._messages)})"

    # -- internals -----------------------------------------------------------------------
    def _put(self, message: Message) -> Message:
        message = c.normalise_message(message)
        old = self._messages.get(message.id)
        if old is not None and old.provider and old.provider_message_id:
            self._by_pid.pop((old.provider, old.provider_message_id), None)
        self._messages[message.id] = message
        if message.provider and message.provider_message_id:
            self._by_pid[(message.provider, message.provider_message_id)] = message.id
        if message.idempotency_key is not None:
            self._by_key[message.idempotency_key] = message.id
        return message

    def _event(
        self,
        message_id: Optional[str],
        kind: str,
        detail: str,
        *,
        provider: Optional[str] = None,
        old: Optional[str] = None,
        new: Optional[str] = None,
        applied: bool = False,
        provider_message_id: Optional[str] = None,
        at: Optional[dt.datetime] = None,
    ) -> None:
        self._events.append(
            EventRecord(
                id=len(self._events) + 1,
                message_id=message_id,
                provider=provider,
                kind=kind,
                old_state=old,
                new_state=new,
                applied=applied,
                detail=detail,
                provider_message_id=provider_message_id,
                created_at=at or utcnow(),
            )
        )

    def _members(self, batch_id: str) -> List[Message]:
        found = [m for m in self._messages.values() if m.batch_id == batch_id]
        return sorted(found, key=lambda m: (m.created_at, m.id))

    def _batch_info(self, batch: BatchInfo) -> BatchInfo:
        return attrs.evolve(batch, message_ids=tuple(m.id for m in self._members(batch.id)))

    def _require_batch(self, batch_id: str) -> BatchInfo:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise NotFoundError(f"no batch {batch_id!r}")
        return batch

    def _pid_owner(self, provider: Optional[str], pid: Optional[str]) -> Optional[str]:
        if not provider or not pid:
            return None
        return self._by_pid.get((provider, pid))

    # -- messages --------------------------------------------------------------------------
    def add_messages(self, messages: Iterable[Message]) -> List[AddOutcome]:
        """Insert messages all or nothing, idempotent on ``idempotency_key``.

        A message whose id, or (provider, provider_message_id), is already stored raises
        :class:`StoreError` and nothing of the call is stored.
        """
        batch = [c.normalise_message(m) for m in messages]
        with self._lock:
            outcomes: List[AddOutcome] = []
            fresh: Dict[str, Message] = {}
            fresh_keys: Dict[str, Message] = {}
            fresh_pids: Set[_PidKey] = set()
            for message in batch:
                key = message.idempotency_key
                if key is not None and key in self._by_key:
                    outcomes.append(AddOutcome(self._messages[self._by_key[key]], False))
                    continue
                if key is not None and key in fresh_keys:
                    outcomes.append(AddOutcome(fresh_keys[key], False))
                    continue
                if message.id in self._messages or message.id in fresh:
                    raise c.message_conflict(message, "a message with this id exists")
                if message.provider and message.provider_message_id:
                    pid = (message.provider, message.provider_message_id)
                    if pid in self._by_pid or pid in fresh_pids:
                        raise c.message_conflict(
                            message, f"provider id {message.provider_message_id!r} is taken"
                        )
                    fresh_pids.add(pid)
                fresh[message.id] = message
                if key is not None:
                    fresh_keys[key] = message
                outcomes.append(AddOutcome(message, True))
            for message in fresh.values():
                self._put(message)
            return outcomes

    def add_messages_claimed(self, messages: Iterable[Message],
                             claim: InsertClaim) -> ClaimedAdd:
        """:meth:`add_messages`, opening batch ``claim.batch_id`` in the same step (see
        :class:`~smskit.store.base.ClaimingStore`)."""
        claim = c.checked_claim(claim)
        now = claim.now
        given = [c.normalise_message(m) for m in messages]
        with self._lock:
            if claim.batch_id in self._batches:
                raise StoreError(f"batch {claim.batch_id!r} already exists")
            marked, _ = c.stamp_claimed(given, claim, self._held_campaigns())
            outcomes = self.add_messages(marked)
            claimed = [o.message for o in outcomes
                       if o.created and o.message.batch_id == claim.batch_id]
            if not claimed:
                return ClaimedAdd(outcomes)
            batch = self._batches[claim.batch_id] = BatchInfo(
                id=claim.batch_id, provider=claim.provider, status=c.BATCH_CLAIMED,
                created_at=now, updated_at=now)
            return ClaimedAdd(outcomes, (attrs.evolve(batch, message_ids=tuple(
                m.id for m in claimed)), claimed))

    def get(self, message_id: str) -> Optional[Message]:
        """A message by our id, or ``None``."""
        with self._lock:
            return self._messages.get(message_id)

    def get_many(self, message_ids: Sequence[str]) -> List[Message]:
        """The messages with these ids that exist, in the given order."""
        with self._lock:
            return [self._messages[i] for i in message_ids if i in self._messages]

    def find_by_provider_id(self, provider: str, provider_message_id: str) -> Optional[Message]:
        """A message by the provider's id, or ``None``."""
        with self._lock:
            owner = self._pid_owner(provider, provider_message_id)
            return self._messages[owner] if owner else None

    def list_messages(
        self,
        *,
        state: Optional[State] = None,
        phone: Optional[str] = None,
        campaign_id: Optional[str] = None,
        limit: int = 100,
        offset: int = 0,
    ) -> List[Message]:
        """Messages, newest first, filtered."""
        _check_page(limit, offset)
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if (state is None or m.state == state)
                and (phone is None or m.phone == phone)
                and (campaign_id is None or m.campaign_id == campaign_id)
            ]
        found.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        return found[offset : offset + limit]

    def count_by_state(self, provider: Optional[str] = None) -> Dict[Tuple[str, State], int]:
        """``{(provider, state): count}`` over outbound messages (provider ``""`` when unset)."""
        counts: Dict[Tuple[str, State], int] = {}
        with self._lock:
            for m in self._messages.values():
                if m.direction is not Direction.OUTBOUND:
                    continue
                if provider is not None and m.provider != provider:
                    continue
                key = (m.provider or "", m.state)
                counts[key] = counts.get(key, 0) + 1
        return counts

    def cancel(self, message_id: str, reason: str) -> Optional[Message]:
        """Cancel a draft/outgoing message not yet claimed; ``None`` when it is too late."""
        with self._lock:
            message = self._messages.get(message_id)
            if message is None:
                raise NotFoundError(f"no message {message_id!r}")
            if message.state not in c.CANCELABLE or message.batch_id is not None:
                return None
            return self._put(attrs.evolve(
                message, state=State.CANCELED, error_text=reason, updated_at=utcnow()
            ))

    # -- dispatch ----------------------------------------------------------------------------
    def claim_batch(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[BatchInfo]:
        """Take up to ``limit`` due ``outgoing`` messages of ``provider``, oldest first."""
        now = c.require_utc(now, "now")
        if limit < 1:
            raise ValidationError(f"claim limit must be at least 1, got {limit!r}")
        with self._lock:
            held = self._held_campaigns()
            due = [
                m
                for m in self._messages.values()
                if m.state is State.OUTGOING
                and m.provider == provider
                and m.batch_id is None
                and (m.scheduled_at is None or m.scheduled_at <= now)
                and (m.campaign_id is None or m.campaign_id not in held)
            ]
            if not due:
                return None
            if batch_id in self._batches:
                raise StoreError(f"batch {batch_id!r} already exists")
            due.sort(key=lambda m: (m.created_at, m.id))
            for message in due[:limit]:
                self._put(attrs.evolve(message, batch_id=batch_id, updated_at=now))
            batch = BatchInfo(
                id=batch_id, provider=provider, status=c.BATCH_CLAIMED, created_at=now,
                updated_at=now,
            )
            self._batches[batch_id] = batch
            return self._batch_info(batch)

    def record_results(
        self, batch_id: str, results: Sequence[SendResult], now: dt.datetime
    ) -> None:
        """Write per-message results forward only, and mark the batch ``done`` (``ambiguous``
        while a claimed message is still ``outgoing``).

        A provider id another message already owns is not stored (a ``conflict`` event says
        so in the message's history); a result for a message outside the batch is ignored.
        """
        now = c.require_utc(now, "now")
        results = [c.without_nul(result) for result in results]
        with self._lock:
            batch = self._require_batch(batch_id)
            members = {m.id: m for m in self._members(batch_id)}
            taken: Dict[_PidKey, str] = {}
            conflicts: List[Tuple[str, Optional[str], str]] = []
            for result in results:
                message = members.get(result.message_id)
                if message is None:
                    log.warning("result for message %s ignored: not in batch %s",
                                result.message_id, batch_id)
                    continue
                changes = c.merge_result(message, result, now)
                pid = changes.get("provider_message_id")
                if pid and message.provider:
                    key = (message.provider, pid)
                    owner = self._by_pid.get(key) or taken.get(key)
                    if owner is not None and owner != message.id:
                        del changes["provider_message_id"]
                        conflicts.append(
                            (message.id, message.provider,
                             c.pid_conflict_detail(message.provider, pid, owner))
                        )
                    else:
                        taken[key] = message.id
                members[message.id] = c.evolve(message, changes)
            for message in members.values():
                self._put(message)
            for message_id, provider, detail in conflicts:
                self._event(message_id, c.KIND_CONFLICT, detail, provider=provider)
            unsettled = sum(1 for m in members.values() if m.state is State.OUTGOING)
            status = c.BATCH_AMBIGUOUS if unsettled else c.BATCH_DONE
            self._batches[batch_id] = attrs.evolve(
                batch, status=status, updated_at=now,
                error_text=c.unsettled_text(unsettled) if unsettled else batch.error_text,
                provider_request_id=c.request_id_of(results) or batch.provider_request_id)

    def awaiting_status(self, provider: str, sent_before: dt.datetime, *,
                        after: Optional[Tuple[dt.datetime, str]] = None,
                        limit: int = 1000) -> List[Message]:
        """``sent`` messages of ``provider`` sent at or before ``sent_before``, by
        (``sent_at``, ``id``) after ``after``."""
        sent_before = c.require_utc(sent_before, "sent_before")
        with self._lock:
            found = [m for m in self._messages.values()
                     if m.state is State.SENT and m.provider == provider
                     and m.sent_at is not None and m.sent_at <= sent_before
                     and (after is None or (m.sent_at, m.id) > after)]
        found.sort(key=lambda m: (m.sent_at, m.id))
        return found[:limit]

    def release_batch(
        self, batch_id: str, error_text: str, retry_at: Optional[dt.datetime] = None
    ) -> None:
        """Put the batch's still-outgoing messages back in the queue, one attempt more each."""
        retry_at = c.require_aware(retry_at, "retry_at")
        now = utcnow()
        with self._lock:
            batch = self._require_batch(batch_id)
            for message in self._members(batch_id):
                if message.state is not State.OUTGOING:
                    continue
                self._put(
                    attrs.evolve(
                        message,
                        batch_id=None,
                        attempts=message.attempts + 1,
                        scheduled_at=retry_at if retry_at is not None else message.scheduled_at,
                        updated_at=now,
                    )
                )
            self._batches[batch_id] = attrs.evolve(
                batch, status=c.BATCH_RELEASED, error_text=error_text, updated_at=now
            )

    def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                         now: dt.datetime,
                         retry_at: Optional[dt.datetime] = None) -> List[str]:
        """Take the listed messages still ``outgoing`` in the batch back to the queue, under
        the provider each item names (a move writes a ``rerouted`` event)."""
        now = c.require_utc(now, "now")
        retry_at = c.require_aware(retry_at, "retry_at")
        done: List[str] = []
        with self._lock:
            self._require_batch(batch_id)
            for item in items:
                message = self._messages.get(item.message_id)
                if (message is None or message.batch_id != batch_id
                        or message.state is not State.OUTGOING):
                    continue
                provider = item.provider or message.provider
                moved = provider != message.provider
                self._put(attrs.evolve(
                    message, batch_id=None, provider=provider, updated_at=now,
                    cost=item.cost if moved and item.cost is not None else message.cost,
                    scheduled_at=retry_at if retry_at is not None else message.scheduled_at))
                if moved:
                    self._event(message.id, KIND_REROUTED,
                                c.reroute_detail(message.provider, provider or "", reason),
                                provider=provider, at=now)
                done.append(message.id)
        return done

    def reroute_counts(self, start: Optional[dt.datetime] = None,
                       end: Optional[dt.datetime] = None) -> Dict[Tuple[str, str], int]:
        """Messages moved between providers, ``{(from, to): count}``, by ``rerouted`` events
        created in ``[start, end)``."""
        start = c.require_aware(start, "start")
        end = c.require_aware(end, "end")
        counts: Dict[Tuple[str, str], int] = {}
        with self._lock:
            for event in self._events:
                if event.kind != KIND_REROUTED:
                    continue
                if (start is not None and event.created_at < start) or (
                        end is not None and event.created_at >= end):
                    continue
                pair = c.reroute_pair(event.detail)
                if pair is not None:
                    counts[pair] = counts.get(pair, 0) + 1
        return counts

    def mark_batch_ambiguous(self, batch_id: str, error_text: str) -> None:
        """The request may have arrived: the batch waits for reconciliation."""
        with self._lock:
            batch = self._require_batch(batch_id)
            self._batches[batch_id] = attrs.evolve(
                batch, status=c.BATCH_AMBIGUOUS, error_text=error_text, updated_at=utcnow()
            )

    def batches(
        self, *, status: Optional[str] = None, older_than: Optional[dt.datetime] = None
    ) -> List[BatchInfo]:
        """Batches by status, oldest first; ``older_than`` compares the claim time."""
        older_than = c.require_aware(older_than, "older_than")
        with self._lock:
            found = [
                b
                for b in self._batches.values()
                if (status is None or b.status == status)
                and (older_than is None or b.created_at < older_than)
            ]
            found.sort(key=lambda b: (b.created_at, b.id))
            return [self._batch_info(b) for b in found]

    def get_batch(self, batch_id: str) -> Optional[BatchInfo]:
        """One batch with its message ids, or ``None``."""
        with self._lock:
            batch = self._batches.get(batch_id)
            return self._batch_info(batch) if batch else None

    # -- status and inbound ------------------------------------------------------------------
    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Match the event (our id first, then provider id), apply it forward only, record it."""
        event = c.without_nul(event)
        with self._lock:
            message = self._messages.get(event.message_id) if event.message_id else None
            if message is None:
                owner = self._pid_owner(event.provider, event.provider_message_id)
                message = self._messages[owner] if owner else None
            if message is None:
                self._event(None, c.KIND_STATUS, c.orphan_detail(event), provider=event.provider,
                            new=event.state.value, provider_message_id=event.provider_message_id)
                return ApplyOutcome(None, False, None, None, c.UNKNOWN_REASON)
            transition = apply_status(message, event)
            updated = transition.message
            conflict: Optional[str] = None
            new_pid = updated.provider_message_id
            if transition.applied and new_pid and new_pid != message.provider_message_id:
                owner = self._pid_owner(updated.provider, new_pid)
                if owner is not None and owner != message.id:
                    conflict = c.pid_conflict_detail(updated.provider, new_pid, owner)
                    updated = attrs.evolve(updated, provider_message_id=message.provider_message_id)
            if transition.applied:
                updated = self._put(updated)
            self._event(message.id, c.KIND_STATUS, transition.reason, provider=event.provider,
                        old=transition.old.value, new=event.state.value,
                        applied=transition.applied, provider_message_id=event.provider_message_id)
            if conflict is not None:
                self._event(message.id, c.KIND_CONFLICT, conflict, provider=event.provider)
            return ApplyOutcome(updated, transition.applied, transition.old, transition.new,
                                transition.reason)

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`apply_status` for each event in turn, under one hold of the lock (no other
        caller sees the events half applied; there is no rollback, and nothing here fails
        short of a bug)."""
        with self._lock:
            return [self.apply_status(event) for event in events]

    def record_inbound(self, inbound: InboundMessage) -> InboundOutcome:
        """Store a reply once per (provider, provider_reply_id)."""
        inbound = c.without_nul(inbound)
        key = (inbound.provider, inbound.provider_reply_id)
        with self._lock:
            existing = self._by_reply.get(key)
            if existing is not None:
                return InboundOutcome(self._messages[existing], False)
            reply_to: Optional[str] = None
            if inbound.in_reply_to_message_id in self._messages:
                reply_to = inbound.in_reply_to_message_id
            if reply_to is None:
                reply_to = self._pid_owner(inbound.provider, inbound.in_reply_to_provider_id)
            message = c.inbound_to_message(inbound, reply_to)
            self._put(message)
            self._by_reply[key] = message.id
            return InboundOutcome(message, True)

    def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for the message, oldest first."""
        with self._lock:
            return [e for e in self._events if e.message_id == message_id]

    def orphan_events(self, limit: int = 100) -> List[EventRecord]:
        """Status events that matched no message, newest first."""
        with self._lock:
            found = [e for e in self._events if e.message_id is None and e.kind == c.KIND_STATUS]
        return list(reversed(found))[:limit]

    def record_event(
        self,
        message_id: Optional[str],
        kind: str,
        detail: str,
        *,
        provider: Optional[str] = None,
    ) -> None:
        """Append a free-form event to a message's history (``NotFoundError`` if unknown)."""
        with self._lock:
            if message_id is not None and message_id not in self._messages:
                raise NotFoundError(f"no message {message_id!r}")
            self._event(message_id, kind, detail, provider=provider)

    # -- blacklist -----------------------------------------------------------------------------
    def is_blacklisted(self, phone: str) -> bool:
        """Whether the E.164 number is on the list."""
        with self._lock:
            return phone in self._blacklist

    def blacklisted(self, phones: Sequence[str]) -> Set[str]:
        """The subset of ``phones`` on the list."""
        with self._lock:
            return {p for p in phones if p in self._blacklist}

    def list_blacklist(self) -> List[BlacklistEntry]:
        """All entries, oldest first."""
        with self._lock:
            return sorted(self._blacklist.values(), key=lambda e: (e.created_at, e.phone))

    # -- schedules -------------------------------------------------------------------------------
    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (a ``StoreError`` if the id exists)."""
        stored = c.normalise_schedule(schedule)
        with self._lock:
            if schedule.id in self._schedules:
                raise StoreError(f"schedule {schedule.id!r} already exists")
            self._schedules[schedule.id] = stored
            return stored

    def get_schedule(self, schedule_id: str) -> Optional[Schedule]:
        """A schedule by id."""
        with self._lock:
            return self._schedules.get(schedule_id)

    def list_schedules(self, *, active_only: bool = False) -> List[Schedule]:
        """All schedules, by next run (ended ones last)."""
        with self._lock:
            found = [s for s in self._schedules.values() if s.active or not active_only]
        return sorted(found, key=_schedule_order)

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; ``False`` if unknown."""
        with self._lock:
            return self._schedules.pop(schedule_id, None) is not None

    def due_schedules(self, now: dt.datetime) -> List[Schedule]:
        """Active schedules whose ``next_run_at`` <= ``now``, earliest first."""
        now = c.require_utc(now, "now")
        with self._lock:
            found = [
                s
                for s in self._schedules.values()
                if s.active and s.next_run_at is not None and s.next_run_at <= now
            ]
        return sorted(found, key=_schedule_order)

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
        with self._lock:
            schedule = self._schedules.get(schedule_id)
            if schedule is None or not schedule.active or schedule.next_run_at != expected_next:
                return False
            self._schedules[schedule_id] = attrs.evolve(
                schedule, next_run_at=new_next, last_run_at=ran_at, runs=schedule.runs + 1,
                active=new_next is not None,
            )
            return True

    def close(self) -> None:
        """Nothing to release."""


def _check_page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise ValidationError(f"limit and offset must be >= 0, got {limit!r} and {offset!r}")


def _schedule_order(s: Schedule) -> Tuple[bool, dt.datetime, dt.datetime, str]:
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return (s.next_run_at is None, s.next_run_at or far, s.created_at, s.id)
