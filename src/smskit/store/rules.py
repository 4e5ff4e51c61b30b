"""Rules both stores share, so the memory and SQL stores cannot drift apart.

Kept here: the state groups the stats count, how a :class:`SendResult` is merged into a
message (forward only), how an inbound SMS becomes a :class:`Message`, the exact
fixed-point form of a cost, and the NUL rule (:func:`without_nul`).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import (
    TYPE_CHECKING,
    AbstractSet,
    Any,
    Dict,
    List,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    TypeVar,
    cast,
)

import attrs

from smskit.errors import StoreError, ValidationError
from smskit.ids import new_id
from smskit.models import Direction, InboundMessage, Message, SendResult, State, StatusEvent
from smskit.store.base import InsertClaim, Schedule, claimable

if TYPE_CHECKING:
    from attrs import AttrsInstance

__all__ = [
    "BATCH_AMBIGUOUS",
    "BATCH_CLAIMED",
    "BATCH_DONE",
    "BATCH_RELEASED",
    "CANCELABLE",
    "COST_SCALE",
    "FAILED",
    "KIND_CONFLICT",
    "KIND_STATUS",
    "SENT_OR_LATER",
    "UNKNOWN_REASON",
    "cost_from_units",
    "cost_to_units",
    "day_range",
    "evolve",
    "inbound_to_message",
    "merge_result",
    "message_conflict",
    "normalise_message",
    "normalise_schedule",
    "orphan_detail",
    "pid_conflict_detail",
    "reroute_detail",
    "reroute_pair",
    "require_aware",
    "require_utc",
    "unsettled_text",
    "without_nul",
]

BATCH_CLAIMED = "claimed"
BATCH_DONE = "done"
BATCH_AMBIGUOUS = "ambiguous"
BATCH_RELEASED = "released"

KIND_STATUS = "status"
KIND_CONFLICT = "conflict"
UNKNOWN_REASON = "unknown message"

#: States a message reaches once the provider has accepted it (the stats' ``sent``).
SENT_OR_LATER: Tuple[State, ...] = (State.SENT, State.DELIVERED, State.ERROR, State.EXPIRED)
#: The stats' ``failed``: accepted by the provider, then not delivered.
FAILED: Tuple[State, ...] = (State.ERROR, State.EXPIRED)
#: States :meth:`Store.cancel` may still cancel (and only while unclaimed).
CANCELABLE: Tuple[State, ...] = (State.DRAFT, State.OUTGOING)

#: Costs are kept exactly as integers of 10**-COST_SCALE (micro-units of the currency).
COST_SCALE = 6
_COST_FACTOR = Decimal(10) ** COST_SCALE


def require_aware(value: Optional[dt.datetime], what: str) -> Optional[dt.datetime]:
    """``value`` in UTC; a :class:`ValidationError` naming ``what`` for a naive datetime."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{what}: expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{what}: naive datetime {value!r}; smskit needs timezone-aware")
    return value.astimezone(dt.timezone.utc)


def require_utc(value: dt.datetime, what: str) -> dt.datetime:
    """Like :func:`require_aware`, for a datetime that may not be ``None``."""
    checked = require_aware(value, what)
    if checked is None:
        raise ValidationError(f"{what}: a datetime is required")
    return checked


_MESSAGE_TIMES = ("created_at", "scheduled_at", "sent_at", "delivered_at", "updated_at")
_NUL = "\x00"
_REPLACEMENT = "\ufffd"
_Value = TypeVar("_Value", bound="AttrsInstance")


#: The field names of each value class :func:`without_nul` has seen (``attrs.fields`` per call
#: was a measurable part of a bulk send).
_FIELD_NAMES: Dict[type, Tuple[str, ...]] = {}


def _nul_free(value: Any) -> Any:
    """A text, or a tuple of texts, with U+0000 replaced; anything else as it is."""
    if isinstance(value, str):
        return value.replace(_NUL, _REPLACEMENT) if _NUL in value else value
    if isinstance(value, tuple) and any(isinstance(v, str) and _NUL in v for v in value):
        return tuple(_nul_free(v) for v in value)
    return value


def without_nul(value: _Value) -> _Value:
    """The NUL rule: an attrs value (a :class:`Message`, :class:`InboundMessage`,
    :class:`StatusEvent` or :class:`SendResult`) with every U+0000 in its text fields (and in
    the texts of a tuple field, such as tags) replaced by U+FFFD; the same object when it holds
    none. Mappings (``raw``) are left alone.

    PostgreSQL cannot store U+0000 in text, and some gateways write GSM-7's ``@`` as that
    character: every store applies the rule to what it is given, so a reply or an id carrying
    one is stored, and read back, the same way on SQLite, PostgreSQL and in memory.
    """
    changes: Dict[str, Any] = {}
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in attrs.fields(type(value)))
    for name in names:
        current = getattr(value, name)
        if current is None or (type(current) is str and _NUL not in current):
            continue  # the common cases, decided here: every message of a send comes through
        if not isinstance(current, (str, tuple)):
            continue  # datetimes, numbers, mappings (``raw`` is left alone)
        cleaned = _nul_free(current)
        if cleaned is not current:
            changes[name] = cleaned  # these value classes have public, init fields
    if not changes:
        return value
    # the mypy attrs plugin cannot follow evolve() through a type variable
    return cast(_Value, attrs.evolve(cast(Any, value), **changes))


def normalise_message(message: Message) -> Message:
    """``message`` with every datetime in UTC (what a store gives back), its cost checked and
    the NUL rule applied (:func:`without_nul`)."""
    cost_to_units(message.cost, f"message {message.id} cost")
    message = without_nul(message)
    changes: Dict[str, Any] = {}
    for name in _MESSAGE_TIMES:
        value = getattr(message, name)
        if value is not None and value.tzinfo is not dt.timezone.utc:
            changes[name] = value.astimezone(dt.timezone.utc)
    return attrs.evolve(message, **changes) if changes else message


def normalise_schedule(schedule: Schedule) -> Schedule:
    """The schedule as a store keeps it: UTC datetimes and a JSON copy of the request."""
    try:
        request = json.loads(json.dumps(schedule.request))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"schedule {schedule.id!r}: request is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise ValidationError(f"schedule {schedule.id!r}: request must be a JSON object")
    return attrs.evolve(
        schedule,
        request=request,
        next_run_at=require_aware(schedule.next_run_at, "next_run_at"),
        dtstart=require_aware(schedule.dtstart, "dtstart"),
        last_run_at=require_aware(schedule.last_run_at, "last_run_at"),
        created_at=require_utc(schedule.created_at, "created_at"),
    )


def cost_to_units(cost: Optional[Decimal], what: str = "cost") -> Optional[int]:
    """The cost as an exact integer of micro-units; more than 6 decimal places is refused."""
    if cost is None:
        return None
    try:
        value = Decimal(cost)
        units = value * _COST_FACTOR
        exact = units == units.to_integral_value()
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise ValidationError(f"{what}: {cost!r} is not a decimal amount") from exc
    if not value.is_finite() or not exact:
        raise ValidationError(
            f"{what}: {cost!r} cannot be stored exactly (at most {COST_SCALE} decimal places)"
        )
    return int(units)


def cost_from_units(units: Any) -> Optional[Decimal]:
    """The exact :class:`Decimal` for a stored number of micro-units (``None`` stays ``None``)."""
    if units is None:
        return None
    return Decimal(int(units)) / _COST_FACTOR


def day_range(
    start: Optional[dt.date], end: Optional[dt.date]
) -> Tuple[Optional[dt.datetime], Optional[dt.datetime]]:
    """UTC bounds ``[start 00:00, end+1 00:00)`` for filtering on a UTC creation time."""
    lo = dt.datetime.combine(start, dt.time(0), tzinfo=dt.timezone.utc) if start else None
    hi = (
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)
        if end
        else None
    )
    return lo, hi


class ResultTarget(Protocol):
    """What :func:`merge_result` reads of a message (a :class:`Message`, or a store's row)."""

    @property
    def state(self) -> State:
        """The message's state."""

    @property
    def provider_message_id(self) -> Optional[str]:
        """The provider's id of the message, if any."""

    @property
    def provider_request_id(self) -> Optional[str]:
        """The provider's id of the request that carried the message, if any."""

    @property
    def sent_at(self) -> Optional[dt.datetime]:
        """When the message was sent, if it was."""


def merge_result(message: ResultTarget, result: SendResult, now: dt.datetime) -> Dict[str, Any]:
    """The field changes a provider result makes to ``message``, forward only.

    Provider ids fill in only when the message has none. The state moves only forward
    (a result arriving after a delivery report does not move the message back); ``sent_at``
    is set once; a refusal (rejected, canceled, error, expired) keeps the error code and text.
    """
    changes: Dict[str, Any] = {}
    if result.provider_message_id and not message.provider_message_id:
        changes["provider_message_id"] = result.provider_message_id
    if result.provider_request_id and not message.provider_request_id:
        changes["provider_request_id"] = result.provider_request_id
    if message.state.can_move_to(result.state):
        changes["state"] = result.state
        if result.state in SENT_OR_LATER and message.sent_at is None:
            changes["sent_at"] = now
        if result.state.is_final and result.state is not State.DELIVERED:
            changes["error_code"] = result.error_code
            changes["error_text"] = result.error_text
    if changes:
        changes["updated_at"] = now
    return changes


def inbound_to_message(inbound: InboundMessage, in_reply_to: Optional[str]) -> Message:
    """The stored form of a reply: an ``inbound`` message, final (``delivered``) at receipt."""
    received = require_aware(inbound.received_at, "received_at")
    return Message(
        id=new_id(),
        phone=inbound.phone,
        body=inbound.body,
        direction=Direction.INBOUND,
        state=State.DELIVERED,
        provider=inbound.provider,
        created_at=received,
        delivered_at=received,
        updated_at=received,
        in_reply_to=in_reply_to,
    )


def orphan_detail(event: StatusEvent) -> str:
    """The history text of a status event that matched no message."""
    return (
        f"{UNKNOWN_REASON}: reference {event.message_id!r}, "
        f"provider id {event.provider_message_id!r}, state {event.state.value}"
    )


def pid_conflict_detail(provider: Optional[str], pid: str, owner: str) -> str:
    """The history text when a provider id is refused because another message owns it."""
    return f"provider id {pid!r} of {provider!r} already belongs to message {owner}; not stored"


def reroute_detail(old: Optional[str], new: str, reason: str) -> str:
    """The history text of a move to another provider (``rerouted`` events)."""
    return f"from {old or ''} to {new}: {reason}"


def reroute_pair(detail: str) -> Optional[Tuple[str, str]]:
    """``(old, new)`` of a :func:`reroute_detail` text, ``None`` for any other text."""
    head, sep, _ = detail.partition(": ")
    if not sep or not head.startswith("from ") or " to " not in head:
        return None
    old, _, new = head[len("from "):].partition(" to ")
    return old, new


def message_conflict(message: Message, what: str) -> StoreError:
    """The error for a new message that collides with a stored one."""
    return StoreError(f"message {message.id} cannot be stored: {what}")


def evolve(message: Message, changes: Dict[str, Any]) -> Message:
    """``message`` with ``changes`` applied (no-op for an empty dict)."""
    return attrs.evolve(message, **changes) if changes else message


def unsettled_text(count: int) -> str:
    """The error text of a batch :meth:`~smskit.store.base.Store.record_results` leaves
    ``ambiguous``: ``count`` claimed messages got no result."""
    return (f"no result for {count} message(s) of the batch: they may have been sent; "
            "reconcile before resending")


def request_id_of(results: Sequence[SendResult]) -> Optional[str]:
    """The gateway's request id reported by a batch's results (the first one given)."""
    return next((r.provider_request_id for r in results if r.provider_request_id), None)


def checked_claim(claim: InsertClaim) -> InsertClaim:
    """``claim`` with its time in UTC (a naive one raises); a limit below 1 raises
    :class:`ValidationError`."""
    if claim.limit < 1:
        raise ValidationError(f"claim limit must be at least 1, got {claim.limit!r}")
    return attrs.evolve(claim, now=require_utc(claim.now, "now"))


def stamp_claimed(messages: Sequence[Message], claim: InsertClaim,
                  held: AbstractSet[str]) -> Tuple[List[Message], List[Message]]:
    """``messages`` with the first ``claim.limit`` that :func:`~smskit.store.base.claimable`
    lets the claim take stamped as it stamps them (``batch_id``, ``updated_at``), and those
    stamped, in order (``held``: campaigns whose messages wait)."""
    room = claim.limit
    out: List[Message] = []
    stamped: List[Message] = []
    for message in messages:
        if room and claimable(message, claim, held):
            message = attrs.evolve(message, batch_id=claim.batch_id, updated_at=claim.now)
            stamped.append(message)
            room -= 1
        out.append(message)
    return out, stamped
