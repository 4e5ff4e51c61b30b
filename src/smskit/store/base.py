"""The Store protocol: everything the pipeline, the server and the scheduler persist.

Guarantees every implementation gives (the store conformance suite,
:mod:`smskit.testing.stores`, checks them):

* :meth:`Store.add_messages` is idempotent: a second message with the same
  ``idempotency_key`` is not inserted; the stored one is returned with ``created=False``.
  Two messages can never share (``provider``, ``provider_message_id``).
* :meth:`Store.claim_batch` hands each due ``outgoing`` message to exactly one caller.
* State changes only move forward (:func:`smskit.models.apply_status`); every applied or
  ignored status event is kept in the message's history; events for unknown ids are kept too.
* An inbound message is recorded once per (``provider``, ``provider_reply_id``).
* :meth:`Store.advance_schedule` is a compare-and-set, so a schedule occurrence is
  materialised once even with several workers.

Conventions every implementation follows:

* Datetimes come back timezone-aware in UTC; a naive datetime given to a store raises
  :class:`~smskit.errors.ValidationError`. A cost is kept exactly, with at most 6 decimal
  places (more raises :class:`~smskit.errors.ValidationError`).
* History holds what :meth:`Store.apply_status` and :meth:`Store.record_event` write, plus a
  ``conflict`` event when a provider id is refused because another message owns it.
  ``record_results``, ``claim_batch``, ``release_batch`` and ``cancel`` do not write history;
  :meth:`Store.requeue_messages` writes a ``rerouted`` event for each message it moves to
  another provider.
* An inbound message is stored as a :class:`~smskit.models.Message` with direction
  ``inbound`` and state ``delivered`` (``created_at`` = ``delivered_at`` = received time).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import AbstractSet, Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.errors import ValidationError
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent

__all__ = [
    "AddOutcome",
    "ApplyOutcome",
    "BatchInfo",
    "BlacklistEntry",
    "ClaimedAdd",
    "ClaimingStore",
    "DayStats",
    "EventRecord",
    "InboundOutcome",
    "InsertClaim",
    "KIND_REROUTED",
    "Requeue",
    "Schedule",
    "Store",
    "add_messages_claimed",
    "claimable",
]


#: The history kind of a move to another provider (:meth:`Store.requeue_messages`).
KIND_REROUTED = "rerouted"


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValidationError(f"{what} must be timezone-aware, got {value!r}")
    return value


@attrs.frozen
class AddOutcome:
    """The stored message and whether this call created it (``False``: idempotency hit)."""

    message: Message
    created: bool


@attrs.frozen
class ApplyOutcome:
    """The result of applying a status event.

    ``message`` is ``None`` when no message matched (the event is still recorded);
    ``applied`` says whether the state changed; ``reason`` explains a no-op.
    """

    message: Optional[Message]
    applied: bool
    old: Optional[State]
    new: Optional[State]
    reason: str


@attrs.frozen
class InboundOutcome:
    """The stored inbound message and whether it is new (``False``: a repeated delivery)."""

    message: Message
    created: bool


@attrs.frozen(kw_only=True)
class BatchInfo:
    """A dispatch attempt: one provider request made of claimed messages.

    ``status`` is ``claimed`` (being sent), ``done`` (results recorded), ``ambiguous`` (the
    request may have arrived; reconcile before anything else) or ``released`` (nothing was sent;
    its messages went back to the queue).
    """

    id: str
    provider: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    message_ids: Sequence[str] = ()
    provider_request_id: Optional[str] = None
    error_text: Optional[str] = None


@attrs.frozen(kw_only=True)
class InsertClaim:
    """A batch to open as messages are inserted (:meth:`ClaimingStore.add_messages_claimed`):
    its id, its provider, the claim time and the most messages it takes."""

    batch_id: str
    provider: str
    now: dt.datetime
    limit: int


@attrs.frozen
class ClaimedAdd:
    """What :meth:`ClaimingStore.add_messages_claimed` did: one outcome per message, in order,
    and the batch it opened with its messages as stored (``None``: none was claimable)."""

    outcomes: List[AddOutcome]
    claimed: Optional[Tuple[BatchInfo, List[Message]]] = None


@attrs.frozen(kw_only=True)
class Requeue:
    """One message to take out of its batch (:meth:`Store.requeue_messages`).

    ``provider``: the provider to queue it under (``None``: its own, a plain release; another
    one: a move, with ``cost`` the price there, ``None`` keeping the cost it has).
    """

    message_id: str
    provider: Optional[str] = None
    cost: Optional[Decimal] = None


@attrs.frozen(kw_only=True)
class EventRecord:
    """One line of a message's history (or an orphan event when ``message_id`` is None)."""

    id: int
    message_id: Optional[str]
    provider: Optional[str]
    kind: str
    old_state: Optional[str]
    new_state: Optional[str]
    applied: bool
    detail: str
    provider_message_id: Optional[str] = None
    created_at: dt.datetime


@attrs.frozen(kw_only=True)
class BlacklistEntry:
    """A number we must not message, with who/what added it and why."""

    phone: str
    reason: str
    source: str
    created_at: dt.datetime


@attrs.frozen(kw_only=True)
class Schedule:
    """A send request to run at ``next_run_at``: once (``rrule`` None) or by RFC 5545 rule.

    ``request`` is the JSON-able description of what to send (phones/template/variables),
    interpreted by :mod:`smskit.outreach.scheduler`.
    """

    id: str
    name: str
    request: Dict[str, Any]
    next_run_at: Optional[dt.datetime]
    timezone: str = "America/Sao_Paulo"
    rrule: Optional[str] = None
    dtstart: Optional[dt.datetime] = None
    active: bool = True
    last_run_at: Optional[dt.datetime] = None
    runs: int = 0
    created_at: dt.datetime


@attrs.frozen(kw_only=True)
class DayStats:
    """Aggregates for one (day, provider): the dashboard's rows."""

    day: dt.date
    provider: str
    sent: int
    delivered: int
    failed: int
    rejected: int
    canceled: int
    inbound: int
    cost: Decimal


@runtime_checkable
class Store(Protocol):
    """Persistence for messages, events, inbound messages, blacklist and schedules.

    Every method the core calls on a store is declared here. The ones at the end
    (:meth:`claim_batch_messages`, :meth:`requeue_messages`, :meth:`awaiting_status`,
    :meth:`apply_statuses`, :meth:`ping`) are optional: they
    have a default built on the others, which a store gets by subclassing ``Store``
    (``class MyStore(Store): ...``) and may override to do better. A store that does not
    subclass must define them all; one that lacks any is refused when it is built
    (``isinstance(store, Store)`` is the check).
    """

    # -- messages ----------------------------------------------------------------------
    def add_messages(self, messages: Iterable[Message]) -> List[AddOutcome]:
        """Insert messages in one transaction, idempotent on ``idempotency_key``.

        One outcome per message, in order. A message whose id or (provider,
        provider_message_id) is already stored raises :class:`~smskit.errors.StoreError`, and
        then nothing of the call is stored.
        """
        ...

    def get(self, message_id: str) -> Optional[Message]:
        """A message by our id, or ``None``."""
        ...

    def get_many(self, message_ids: Sequence[str]) -> List[Message]:
        """The messages with these ids that exist, in the given order."""
        ...

    def find_by_provider_id(self, provider: str, provider_message_id: str) -> Optional[Message]:
        """A message by the provider's id, or ``None``."""
        ...

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
        ...

    def count_by_state(self, provider: Optional[str] = None) -> Dict[Tuple[str, State], int]:
        """``{(provider, state): count}`` over all outbound messages (for metrics).

        ``provider`` is ``""`` for messages without one; ``state`` is a :class:`State`.
        """
        ...

    def cancel(self, message_id: str, reason: str) -> Optional[Message]:
        """Cancel a message not yet claimed for sending; ``None`` when it is too late.

        Only a ``draft`` or ``outgoing`` message outside any batch can be canceled (its
        ``error_text`` becomes ``reason``); an unknown id raises
        :class:`~smskit.errors.NotFoundError`.
        """
        ...

    # -- dispatch ----------------------------------------------------------------------
    def claim_batch(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[BatchInfo]:
        """Atomically take up to ``limit`` due, unclaimed ``outgoing`` messages of ``provider``
        (``scheduled_at`` None or <= ``now``, oldest first) into a new batch ``batch_id``.
        ``None`` when nothing is due."""
        ...

    def record_results(
        self, batch_id: str, results: Sequence[SendResult], now: dt.datetime
    ) -> None:
        """Write per-message results forward only, and mark the batch ``done``. Messages of the
        batch without a result stay ``outgoing`` and claimed, and then the batch is marked
        ``ambiguous`` instead of ``done``, in the same transaction (its ``error_text`` says
        how many got no result): reconciliation will look, and a crash right after this call
        cannot leave them in a finished batch. A later call that settles them marks it
        ``done``.

        A result never moves a message backwards (a delivery report that came first stays),
        but fills in provider ids it lacks. A provider id that another message already owns is
        refused: the state is still written, the id is not, and a ``conflict`` event goes in
        the message's history. Results for messages outside the batch are ignored (logged).
        An unknown batch raises :class:`~smskit.errors.NotFoundError`.
        """
        ...

    def release_batch(
        self, batch_id: str, error_text: str, retry_at: Optional[dt.datetime] = None
    ) -> None:
        """Nothing was sent: put the batch's messages back in the queue (due at ``retry_at``),
        count an attempt on each, and mark the batch ``released``."""
        ...

    def mark_batch_ambiguous(self, batch_id: str, error_text: str) -> None:
        """The request may have arrived: the batch waits for reconciliation."""
        ...

    def batches(
        self, *, status: Optional[str] = None, older_than: Optional[dt.datetime] = None
    ) -> List[BatchInfo]:
        """Batches by status (``claimed``, ``ambiguous``...), oldest first; ``older_than``
        keeps those claimed (``created_at``) before it."""
        ...

    def get_batch(self, batch_id: str) -> Optional[BatchInfo]:
        """One batch with its message ids."""
        ...

    # -- status and inbound --------------------------------------------------------------
    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Match the event (our id first, then provider id), apply it forward only, record it.

        The history line has ``kind="status"``, the message's state before as ``old_state``,
        the event's state as ``new_state``, ``applied`` and the reason as ``detail``. An event
        matching nothing is kept with ``message_id=None`` (see :meth:`orphan_events`).
        """
        ...

    def record_inbound(self, inbound: InboundMessage) -> InboundOutcome:
        """Store a reply once per (provider, provider_reply_id).

        ``in_reply_to`` is our message id, from ``in_reply_to_message_id`` when it exists or
        else looked up by ``in_reply_to_provider_id``.
        """
        ...

    def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for the message, oldest first."""
        ...

    def orphan_events(self, limit: int = 100) -> List[EventRecord]:
        """Status events that matched no message, newest first."""
        ...

    def record_event(
        self,
        message_id: Optional[str],
        kind: str,
        detail: str,
        *,
        provider: Optional[str] = None,
    ) -> None:
        """Append a free-form event (a failed hook, a policy decision) to a message's history.

        ``message_id=None`` records a general event; an unknown id raises
        :class:`~smskit.errors.NotFoundError`.
        """
        ...

    # -- blacklist ------------------------------------------------------------------------
    def blacklist_add(self, phone: str, reason: str, source: str) -> bool:
        """Add a number; ``False`` if it was already there."""
        ...

    def blacklist_remove(self, phone: str) -> bool:
        """Remove a number; ``False`` if it was not there."""
        ...

    def is_blacklisted(self, phone: str) -> bool:
        """Whether the E.164 number is on the list."""
        ...

    def blacklisted(self, phones: Sequence[str]) -> Set[str]:
        """The subset of ``phones`` on the list (one query for a whole batch)."""
        ...

    def list_blacklist(self) -> List[BlacklistEntry]:
        """All entries, oldest first."""
        ...

    # -- schedules --------------------------------------------------------------------------
    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (its id must be new: :class:`~smskit.errors.StoreError`)."""
        ...

    def get_schedule(self, schedule_id: str) -> Optional[Schedule]:
        """A schedule by id."""
        ...

    def list_schedules(self, *, active_only: bool = False) -> List[Schedule]:
        """All schedules, by next run (ended ones, without a next run, last)."""
        ...

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule; ``False`` if unknown."""
        ...

    def due_schedules(self, now: dt.datetime) -> List[Schedule]:
        """Active schedules whose ``next_run_at`` <= ``now``."""
        ...

    def advance_schedule(
        self,
        schedule_id: str,
        expected_next: dt.datetime,
        new_next: Optional[dt.datetime],
        ran_at: dt.datetime,
    ) -> bool:
        """Compare-and-set: move ``next_run_at`` from ``expected_next`` to ``new_next`` (None
        ends it). ``True`` only for the one caller that won; that caller materialises the run."""
        ...

    # -- stats ------------------------------------------------------------------------------
    def stats_by_day(
        self, start: Optional[dt.date] = None, end: Optional[dt.date] = None,
        *, tz: Optional[str] = None,
    ) -> List[DayStats]:
        """Per day of creation and provider aggregates, by aggregate queries.

        A day is the calendar date in the IANA time zone ``tz`` (``None``: UTC; the dashboard
        passes ``Settings.timezone``). Days ``start``..``end`` inclusive, ordered by day then
        provider (``""`` when unset).
        ``sent`` counts outbound messages that reached ``sent`` or later (delivered, error,
        expired); ``failed`` is error + expired; ``inbound`` counts replies; ``cost`` is the
        exact sum over the ``sent`` ones.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    # -- optional, with defaults (inherited by subclasses) ------------------------------------
    def claim_batch_messages(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[Tuple[BatchInfo, List[Message]]]:
        """:meth:`claim_batch`, and the claimed messages as stored once claimed (in the
        batch's order); ``None`` when nothing is due. What the dispatcher calls.

        Default: :meth:`claim_batch`, then :meth:`get_many` of the batch's ids. A store
        overrides it to read the messages in the claim's own transaction.
        """
        batch = self.claim_batch(provider, limit, now, batch_id)
        if batch is None:
            return None
        return batch, self.get_many(batch.message_ids)

    def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                         now: dt.datetime,
                         retry_at: Optional[dt.datetime] = None) -> List[str]:
        """Take some messages out of the claimed batch ``batch_id`` and put them back in the
        queue, each under the provider its :class:`Requeue` names: the messages certainly never
        sent of a batch that stopped part-way, or those moved to another provider while theirs
        is down. Returns the ids requeued, in the order given.

        A compare-and-set, in one transaction: only a message that is still ``outgoing`` and
        still in ``batch_id`` is requeued (a result, a cancel or a reconciliation that came
        first wins; a message outside the batch is skipped). Its ``batch_id`` is cleared, its
        ``scheduled_at`` becomes ``retry_at`` when given, no attempt is counted. A move also
        sets ``provider`` (and ``cost`` when given) and writes a ``rerouted`` event at ``now``
        (provider: the new one; detail ``"from <old> to <new>: <reason>"``). The batch's
        status is left as it is: the caller settles what stays in it (release, results,
        ambiguous). An unknown batch raises :class:`~smskit.errors.NotFoundError`.

        Default: requeues nothing (returns ``[]``), which is always safe: the messages stay
        in the batch and the caller releases or reconciles them with it, on their provider.
        """
        return []

    def awaiting_status(self, provider: str, sent_before: dt.datetime, *,
                        after: Optional[Tuple[dt.datetime, str]] = None,
                        limit: int = 1000) -> List[Message]:
        """Outbound messages of ``provider`` still ``sent`` (no final status yet) whose
        ``sent_at`` is at or before ``sent_before``, ordered by (``sent_at``, ``id``) and
        after the keyset ``after`` (a ``(sent_at, id)`` pair); at most ``limit``. What status
        polling asks the gateway about, a page at a time.

        Default: reads every ``sent`` message through :meth:`list_messages` and filters
        (fine for a small store); a store overrides it with one indexed query.
        """
        sent_before = _aware(sent_before, "sent_before")
        found: List[Message] = []
        offset = 0
        while True:
            page = self.list_messages(state=State.SENT, limit=1000, offset=offset)
            for message in page:
                if message.provider != provider or message.sent_at is None:
                    continue
                key = (message.sent_at, message.id)
                if message.sent_at <= sent_before and (after is None or key > after):
                    found.append(message)
            if len(page) < 1000:
                break
            offset += len(page)
        found.sort(key=lambda m: (m.sent_at, m.id))
        return found[:limit]

    def apply_statuses(self, events: Sequence[StatusEvent]) -> List[ApplyOutcome]:
        """:meth:`apply_status` for each event in turn; the outcomes in the order of
        ``events`` (a later event sees what an earlier one changed). What
        :meth:`smskit.SmsKit.apply_statuses` and the server's status batching call.

        Default: one :meth:`apply_status` call per event, so a failure raises with the events
        before it stored. A store overrides it to apply the whole call in one transaction
        (group commit; the SQL store does): then a failure stores nothing of the call.
        """
        return [self.apply_status(event) for event in events]

    def ping(self) -> None:
        """Return when the store answers, raise when it cannot (``/healthz``).

        Default: a :meth:`get` of an id no message has. A store overrides it with something
        cheaper or more telling (the Odoo store asks its sidecar).
        """
        self.get("smskit-healthz-probe")


@runtime_checkable
class ClaimingStore(Protocol):
    """A store that can open a batch in the same transaction that inserts its messages: a bulk
    send that dispatches each chunk right away then writes each message once before the
    request instead of twice (insert, then claim). Optional: :func:`add_messages_claimed`
    falls back to :meth:`Store.add_messages` (the dispatch claims afterwards)."""

    def add_messages_claimed(self, messages: Iterable[Message],
                             claim: InsertClaim) -> ClaimedAdd:
        """:meth:`Store.add_messages`, and in the same transaction a batch ``claim.batch_id``
        holding the first ``claim.limit`` messages the call inserted that a claim at
        ``claim.now`` would take (:func:`claimable`), stamped as such a claim stamps them
        (``batch_id``, ``updated_at``). No batch is opened when none is claimable."""
        ...


def claimable(message: Message, claim: InsertClaim, held: AbstractSet[str]) -> bool:
    """Whether :meth:`Store.claim_batch` at ``claim.now`` for ``claim.provider`` would take
    ``message`` once inserted (``held``: the campaigns whose messages must wait)."""
    return (message.state is State.OUTGOING and message.batch_id is None
            and message.provider == claim.provider
            and (message.scheduled_at is None or message.scheduled_at <= claim.now)
            and (message.campaign_id is None or message.campaign_id not in held))


def add_messages_claimed(store: Store, messages: Iterable[Message],
                         claim: Optional[InsertClaim]) -> ClaimedAdd:
    """``store``'s :meth:`ClaimingStore.add_messages_claimed` when it has one and ``claim`` is
    given; otherwise :meth:`Store.add_messages`, with no batch opened."""
    if claim is not None and isinstance(store, ClaimingStore):
        return store.add_messages_claimed(messages, claim)
    return ClaimedAdd(store.add_messages(messages))
