"""Frozen value objects shared by every part of smskit, and the forward-only state machine.

A :class:`Message` moves through :class:`State` in one direction only::

    draft < outgoing < sent < {delivered, error, expired, rejected, canceled}

The five states on the right are final. :func:`apply_status` applies a provider
:class:`StatusEvent` to a message and says whether it changed anything; it is idempotent,
never moves a message backwards, and never leaves a final state.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from smskit.ids import new_id

__all__ = [
    "Direction",
    "InboundMessage",
    "Message",
    "SendResult",
    "State",
    "StatusEvent",
    "Transition",
    "apply_status",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC (smskit never stores naive datetimes)."""
    return dt.datetime.now(dt.timezone.utc)


class State(str, enum.Enum):
    """Where a message is in its life. Compare progress with :attr:`rank`."""

    DRAFT = "draft"
    OUTGOING = "outgoing"
    SENT = "sent"
    DELIVERED = "delivered"
    ERROR = "error"
    EXPIRED = "expired"
    REJECTED = "rejected"
    CANCELED = "canceled"

    @property
    def rank(self) -> int:
        """0 draft, 1 outgoing, 2 sent, 3 for every final state."""
        return _RANK[self]

    @property
    def is_final(self) -> bool:
        """True for delivered, error, expired, rejected and canceled."""
        return _RANK[self] == 3

    def can_move_to(self, new: State) -> bool:
        """Whether this state may move to ``new`` (strictly forward, never from a final one)."""
        return not self.is_final and _RANK[new] > _RANK[self]


_RANK = {
    State.DRAFT: 0,
    State.OUTGOING: 1,
    State.SENT: 2,
    State.DELIVERED: 3,
    State.ERROR: 3,
    State.EXPIRED: 3,
    State.REJECTED: 3,
    State.CANCELED: 3,
}


_SENT_OR_AFTER = frozenset({State.SENT, State.DELIVERED, State.ERROR, State.EXPIRED})


class Direction(str, enum.Enum):
    """Outbound (we send) or inbound (a customer's reply)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


def _aware(value: Optional[dt.datetime]) -> Optional[dt.datetime]:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: smskit needs timezone-aware datetimes")
    return value


def _to_tuple(value: Any) -> Tuple[str, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Message:
    """One SMS, outbound or inbound. ``phone`` is E.164 (``+5511987654321``).

    Build a new outbound message with :meth:`new`; change one with :func:`attrs.evolve`.
    """

    #: Our id (sortable by creation time); the gateway echoes it as the request's reference.
    id: str = attrs.field(factory=new_id)
    #: The number in E.164 (``+5511987654321``): the recipient, or an inbound message's sender.
    phone: str
    #: The text as sent or received (a template already rendered).
    body: str
    direction: Direction = Direction.OUTBOUND
    #: Where the message is in its life; it only ever moves forward.
    state: State = State.DRAFT
    #: The name of the provider that sends it (or received it).
    provider: Optional[str] = None
    #: The gateway's id for this message, once it has one.
    provider_message_id: Optional[str] = None
    #: The gateway's id for the request (the batch) that carried it.
    provider_request_id: Optional[str] = None
    #: The dispatch batch that claimed it (our id, the request's reference).
    batch_id: Optional[str] = None
    #: ``GSM-7`` or ``UCS-2``, once counted.
    encoding: Optional[str] = None
    #: How many SMS parts the body takes.
    segments: int = 0
    #: ``segments`` times the price per segment (``Decimal``, in the gateway's currency).
    cost: Optional[Decimal] = None
    created_at: dt.datetime = attrs.field(factory=utcnow, converter=_aware)
    #: Not before this moment (a scheduled send, or quiet hours); ``None``: as soon as possible.
    scheduled_at: Optional[dt.datetime] = attrs.field(default=None, converter=_aware)
    sent_at: Optional[dt.datetime] = attrs.field(default=None, converter=_aware)
    delivered_at: Optional[dt.datetime] = attrs.field(default=None, converter=_aware)
    updated_at: Optional[dt.datetime] = attrs.field(default=None, converter=_aware)
    #: Why it failed or was refused: a short code (``invalid_phone``, ``policy``, the gateway's).
    error_code: Optional[str] = None
    #: Why it failed or was refused, for people.
    error_text: Optional[str] = None
    campaign_id: Optional[str] = None
    schedule_id: Optional[str] = None
    tags: Tuple[str, ...] = attrs.field(default=(), converter=_to_tuple)
    #: The caller's reference to the recipient (``res.partner,42`` for Odoo).
    partner_ref: Optional[str] = None
    #: At most one message is stored per key: a re-run or a double click sends nothing twice.
    idempotency_key: Optional[str] = None
    #: For an inbound message, the id of our message it answers, when known.
    in_reply_to: Optional[str] = None
    #: How many times a batch holding it was handed to the gateway.
    attempts: int = 0

    @classmethod
    def new(cls, phone: str, body: str, **fields: Any) -> Message:
        """A new outbound draft with a fresh id."""
        return cls(phone=phone, body=body, **fields)


@attrs.frozen(kw_only=True)
class SendResult:
    """What the provider said about one message of a batch.

    ``state`` is :attr:`State.SENT` (accepted) or :attr:`State.REJECTED` (refused, with
    ``error_code``/``error_text``). ``duplicate`` is set when the gateway reported the number
    as a duplicate inside the request; ``opted_out`` when it refused because the recipient
    opted out with it (Twilio's error 21610): the core then blacklists the number too.
    """

    #: Our id of the message (:attr:`Message.id`).
    message_id: str
    #: ``SENT`` (accepted) or ``REJECTED`` (refused).
    state: State
    #: The gateway's id for the message, when it gives one.
    provider_message_id: Optional[str] = None
    #: The gateway's id for the request.
    provider_request_id: Optional[str] = None
    #: The gateway's code for a refusal.
    error_code: Optional[str] = None
    #: The gateway's reason for a refusal, for people.
    error_text: Optional[str] = None
    #: The gateway reported the number twice in the request.
    duplicate: bool = False
    opted_out: bool = False


@attrs.frozen(kw_only=True)
class StatusEvent:
    """A delivery status report from a provider (webhook, poll or reconciliation).

    It names the message by our id (``message_id``, which Kolmeya echoes as ``reference``)
    and/or by the provider's id; stores match on ours first. An event about a whole request
    (Kolmeya rejecting a request at homologation) names no message but our ``batch_id``:
    :meth:`smskit.SmsKit.apply_status` applies it to every message of that batch.
    ``opted_out`` says the gateway failed the message because its recipient opted out with it
    (Twilio's error 21610 in a status callback): the core then blacklists the number too.
    """

    provider: str
    state: State
    message_id: Optional[str] = None
    provider_message_id: Optional[str] = None
    provider_request_id: Optional[str] = None
    batch_id: Optional[str] = None
    status_code: Optional[int] = None
    status_text: Optional[str] = None
    error_code: Optional[str] = None
    error_text: Optional[str] = None
    occurred_at: dt.datetime = attrs.field(factory=utcnow, converter=_aware)
    opted_out: bool = False
    raw: Optional[Mapping[str, Any]] = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class InboundMessage:
    """A customer's SMS to us. ``provider_reply_id`` de-duplicates repeated deliveries.

    ``opt_out`` is the keyword when the gateway itself took the message as an opt-out (Twilio
    handles STOP, STOPALL, QUIT...): the core blacklists the sender even when that keyword is
    not one of its own ``optout_keywords``.
    """

    provider: str
    provider_reply_id: str
    phone: str
    body: str
    received_at: dt.datetime = attrs.field(factory=utcnow, converter=_aware)
    in_reply_to_provider_id: Optional[str] = None
    in_reply_to_message_id: Optional[str] = None
    opt_out: Optional[str] = None
    raw: Optional[Mapping[str, Any]] = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class Transition:
    """The outcome of :func:`apply_status`: the message after the event, and why."""

    message: Message
    applied: bool
    old: State
    new: State
    reason: str


def apply_status(message: Message, event: StatusEvent) -> Transition:
    """Apply ``event`` to ``message``, forward only.

    Returns a :class:`Transition` with ``applied=False`` (and the message unchanged) when the
    event repeats the current state, would move it backwards, or arrives after a final state.
    """
    old = message.state
    if event.state == old:
        return Transition(message, False, old, old, "duplicate")
    if old.is_final:
        return Transition(message, False, old, old, f"already final ({old.value})")
    if not old.can_move_to(event.state):
        reason = f"backwards ({old.value} -> {event.state.value})"
        return Transition(message, False, old, old, reason)
    changes: Dict[str, Any] = {"state": event.state, "updated_at": event.occurred_at}
    if event.provider_message_id and not message.provider_message_id:
        changes["provider_message_id"] = event.provider_message_id
    if event.provider_request_id and not message.provider_request_id:
        changes["provider_request_id"] = event.provider_request_id
    if message.sent_at is None and event.state in _SENT_OR_AFTER:
        changes["sent_at"] = event.occurred_at
    if event.state is State.DELIVERED:
        changes["delivered_at"] = event.occurred_at
    if event.state in (State.ERROR, State.EXPIRED, State.REJECTED):
        changes["error_code"] = event.error_code or (
            str(event.status_code) if event.status_code is not None else None
        )
        changes["error_text"] = event.error_text or event.status_text
    new = attrs.evolve(message, **changes)
    return Transition(new, True, old, event.state, "applied")
