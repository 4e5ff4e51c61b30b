"""Steps 1 to 4 of the send pipeline (:mod:`smskit.outbox`): recipients in, messages ready to
store out, and what became of each recipient.

Nothing here reads or writes the store or the network. What the store knows about a chunk of
recipients (which numbers are blacklisted, who has a do-not-disturb rule) is looked up before
composing and comes in as :class:`Facts`; the plugin hooks come in as plain callables
(:class:`ComposeHooks`); the drafts go out to be stored by the caller, and :func:`settle`
turns the store's answer into each recipient's :class:`Outcome`. The caller that does that
I/O, synchronously, is :mod:`smskit.outbox.sending`::

    parsed = parse_recipients(chunk, spec, composer)              # step 1
    facts = look_up(store, phones_of(parsed), now)                # I/O: one query each
    drafts = compose_drafts(parsed, spec, composer, facts, hooks, clock=clock)  # steps 2-4
    stored = add_messages_with_links(store, composer.links, [m for m, _ in drafts])  # I/O
    outcomes = [settle(draft, answer) for (_, draft), answer in zip(drafts, stored)]
"""

from __future__ import annotations

import datetime as dt
from collections import abc
from decimal import Decimal
from typing import (
    TYPE_CHECKING,
    AbstractSet,
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import attrs

from smskit.config import Settings
from smskit.errors import BodyTooLongError, EmptyBodyError, InvalidPhoneError, ValidationError
from smskit.ids import new_id
from smskit.models import Message, State
from smskit.outbox.links import LinkShortener, shortener_for, template_spans
from smskit.phone import Phone
from smskit.policy import DndRule, QuietHours, dnd_next_allowed
from smskit.routing.policies import ProviderPolicies
from smskit.segments import count_segments
from smskit.store.analytics import Link
from smskit.store.base import AddOutcome
from smskit.template import Template
from smskit.timeutil import DEFAULT_TZ

if TYPE_CHECKING:
    from smskit.outbox.dispatching import Dispatched

__all__ = [
    "BulkSummary",
    "ComposeHooks",
    "Composer",
    "Draft",
    "Facts",
    "Outcome",
    "Parsed",
    "RECIPIENT_FIELDS",
    "Recipient",
    "SendSpec",
    "compose_drafts",
    "parse_phone",
    "parse_recipients",
    "phones_of",
    "settle",
]

#: A recipient of a bulk send: a phone, or a mapping with the phone and template variables.
Recipient = Union[str, int, Mapping[str, Any]]
#: Message fields a mapping recipient may give itself (:attr:`SendSpec.recipient_fields`).
RECIPIENT_FIELDS = ("idempotency_key", "partner_ref", "campaign_id")


@attrs.frozen(kw_only=True)
class Outcome:
    """What happened to one recipient of a send.

    ``state`` is the message's state after the call, its dispatch included (``rejected`` for
    invalid input or a gateway's refusal, ``canceled`` for a policy veto or the blacklist,
    ``outgoing`` while queued, deferred or held, ``sent``...), and ``reason`` why.
    ``created`` is ``False`` when an idempotency key matched an earlier message. ``held``:
    the message is ``outgoing`` in a batch whose request may have reached the gateway; it is
    never sent again by itself (reconciliation, or ``smskit resolve``, settles it).
    """

    index: int
    recipient: str
    message_id: Optional[str]
    state: State
    reason: Optional[str] = None
    deferred_until: Optional[dt.datetime] = None
    created: bool = True
    held: bool = False

    @property
    def queued(self) -> bool:
        """Stored, due, and not yet accepted by the gateway (a worker or the next dispatch
        sends it)."""
        return (self.created and self.state is State.OUTGOING and not self.held
                and self.deferred_until is None)

    def after_dispatch(self, found: Optional[Dispatched]) -> Outcome:
        """This outcome once a dispatch did ``found`` to its message (``None``: untouched):
        its state, whether it is held, and why."""
        if found is None:
            return self
        reason = found.reason or (None if found.state is State.SENT else self.reason)
        # built field by field: attrs.evolve looks the fields up on every call (one a message)
        return Outcome(index=self.index, recipient=self.recipient, message_id=self.message_id,
                       state=found.state, reason=reason, deferred_until=self.deferred_until,
                       created=self.created, held=found.held)


@attrs.define
class BulkSummary:
    """Counts for one send call, of its own recipients only, each counted once by where its
    message is at the end of the call (per-recipient details go to ``on_outcome``):
    ``total`` = ``duplicates`` + ``rejected`` + ``canceled`` + ``deferred`` + ``sent`` +
    ``queued`` + ``held``.

    ``sent``: accepted by the gateway (or already further); ``rejected``: invalid input or
    refused by the gateway; ``canceled``: a policy veto or the blacklist; ``deferred``:
    stored for later (quiet hours, ``at``); ``queued``: stored and due, not yet accepted
    (the worker, or the next dispatch, sends it); ``held``: its request may have reached the
    gateway, reconciliation settles it; ``duplicates``: an idempotency key already used.
    ``failed_dispatch``: how many of ``queued`` and ``held`` a gateway call failed for.
    """

    total: int = 0
    queued: int = 0
    sent: int = 0
    rejected: int = 0
    canceled: int = 0
    deferred: int = 0
    duplicates: int = 0
    failed_dispatch: int = 0
    held: int = 0

    def _bucket(self, outcome: Outcome) -> str:
        if not outcome.created:
            return "duplicates"
        if outcome.state is State.REJECTED:
            return "rejected"
        if outcome.state is State.CANCELED:
            return "canceled"
        if outcome.state.rank >= State.SENT.rank:
            return "sent"
        if outcome.held:
            return "held"
        if outcome.deferred_until is not None:
            return "deferred"
        return "queued"

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        self.total += 1
        bucket = self._bucket(outcome)
        setattr(self, bucket, getattr(self, bucket) + 1)
        if bucket in ("queued", "held") and outcome.reason:
            self.failed_dispatch += 1

    def replace(self, old: Outcome, new: Outcome) -> None:
        """A counted recipient's message moved on (a later dispatch of the same call)."""
        for outcome, step in ((old, -1), (new, 1)):
            bucket = self._bucket(outcome)
            setattr(self, bucket, getattr(self, bucket) + step)
            if bucket in ("queued", "held") and outcome.reason:
                self.failed_dispatch += step


#: A composed message and the outcome its recipient gets if the store takes it as it is.
Draft = Tuple[Message, Outcome]


@attrs.frozen(kw_only=True)
class Composer:
    """Turns one recipient into a :class:`Message` ready to persist (steps 1-4).

    Raises :class:`~smskit.errors.ValidationError` subclasses for input the caller can fix;
    the bulk path turns them into ``rejected`` records instead. ``timezone`` is the one
    recipients' do-not-disturb windows are read in.
    """

    provider: str
    region: str = "BR"
    allow_landlines: bool = False
    price_per_segment: Decimal = Decimal("0.08")
    max_segments: int = 10
    quiet_hours: QuietHours = attrs.field(factory=QuietHours)
    #: With link tracking: replaces URLs by short links before segments are counted.
    links: Optional[LinkShortener] = None
    timezone: str = DEFAULT_TZ
    #: With routing: the provider for a message composed for :attr:`provider` (no I/O).
    route: Optional[Callable[[Message], str]] = None
    #: Per-provider prices and quiet hours (``None``: the flat price and :attr:`quiet_hours`).
    policies: Optional[ProviderPolicies] = None

    @classmethod
    def from_settings(cls, settings: Settings, provider: str, *,
                      quiet_hours: Optional[QuietHours] = None,
                      track_links: Optional[bool] = None,
                      route: Optional[Callable[[Message], str]] = None,
                      policies: Optional[ProviderPolicies] = None) -> Composer:
        """The composer of ``provider`` with the installation's settings (``quiet_hours``:
        default from the settings; ``track_links``: default the ``link_tracking`` setting;
        ``route`` and ``policies``: see the attributes)."""
        return cls(
            provider=provider,
            region=settings.default_region,
            allow_landlines=settings.allow_landlines,
            price_per_segment=settings.price_per_segment,
            max_segments=settings.max_segments,
            quiet_hours=QuietHours.from_settings(settings) if quiet_hours is None
            else quiet_hours,
            links=shortener_for(settings, track_links),
            timezone=settings.timezone,
            route=route,
            policies=policies,
        )

    def quiet_for(self, provider: Optional[str]) -> QuietHours:
        """The quiet hours of messages sent through ``provider``."""
        if self.policies is None or provider is None:
            return self.quiet_hours
        return self.policies.quiet_hours(provider)

    def phone(self, raw: object) -> str:
        """The E.164 form of ``raw`` or :class:`InvalidPhoneError`."""
        return Phone.parse(raw, self.region, allow_landlines=self.allow_landlines).e164

    def body(self, template: Template, context: Mapping[str, Any], recipient: str) -> str:
        """Render and check the body (empty, over the segment cap)."""
        text = template.render(context, recipient=recipient)
        if not text.strip():
            raise EmptyBodyError(f"message to {recipient} is empty")
        return text

    def compose(
        self,
        phone: str,
        body: str,
        *,
        now: dt.datetime,
        at: Optional[dt.datetime] = None,
        template: Optional[Sequence[Tuple[int, int]]] = None,
        **fields: Any,
    ) -> Message:
        """A persisted-ready ``outgoing`` message with encoding, segments, cost and schedule.

        With :attr:`links`, URLs become short links first: segments and cost are those of the
        short form, and the links wait in the shortener for the message to be stored. Only
        URLs in the template's own text are shortened (``template``: where it lies in
        ``body``, see :func:`smskit.outbox.links.template_spans`; default the whole body).
        """
        pending: List[Link] = []
        if self.links is not None:
            fields.setdefault("id", new_id())
            body, pending = self.links.shorten(body, message_id=fields["id"],
                                               campaign_id=fields.get("campaign_id"), now=now,
                                               template=template)
        info = count_segments(body)
        if info.segments > self.max_segments:
            raise BodyTooLongError(info.segments, self.max_segments)
        if self.links is not None:
            self.links.keep(pending)
        provider = self.provider
        if self.route is not None:
            provider = self.route(Message(phone=phone, body=body, state=State.OUTGOING,
                                          provider=provider, encoding=info.encoding,
                                          segments=info.segments, created_at=now, **fields))
        price = self.price_per_segment if self.policies is None else \
            self.policies.price(provider, phone)
        when = at or now
        deferred = self.quiet_for(provider).next_allowed(when)
        scheduled = deferred or at
        return Message(
            phone=phone,
            body=body,
            state=State.OUTGOING,
            provider=provider,
            encoding=info.encoding,
            segments=info.segments,
            cost=info.cost(price),
            created_at=now,
            scheduled_at=scheduled,
            **fields,
        )

    def rejected(self, raw_phone: object, body: str, error: ValidationError, *,
                 now: dt.datetime, **fields: Any) -> Message:
        """A ``rejected`` record for a recipient that failed validation (kept for audit)."""
        code = {
            InvalidPhoneError: "invalid_phone",
            EmptyBodyError: "empty_body",
            BodyTooLongError: "too_long",
        }.get(type(error), "invalid")
        if code == "invalid" and type(error).__name__ == "MissingVariableError":
            code = "missing_variable"
        return Message(phone=str(raw_phone if raw_phone is not None else ""), body=body,
                       state=State.REJECTED, provider=self.provider, created_at=now,
                       error_code=code, error_text=str(error), **fields)


@attrs.frozen(kw_only=True)
class SendSpec:
    """What every recipient of one send shares.

    ``fields`` are stored on each message (tags, campaign, schedule, partner reference, a
    single send's idempotency key). With ``idempotency_prefix`` each recipient of a bulk send
    gets the key ``"<prefix>:<E.164>"``, and a rejected one ``"<prefix>:<E.164 or input>:
    rejected"``. A mapping recipient's ``phone_field`` is its phone.

    ``recipient_fields`` maps message fields (:data:`RECIPIENT_FIELDS`) to keys of a mapping
    recipient that hold its own value: ``{"idempotency_key": "order"}`` keys each message by
    its row's ``order`` (``"<prefix>:<order>"`` with a prefix) instead of by its number, so two
    rows to one number are two messages, each sent once.
    """

    template: Template
    variables: Mapping[str, Any] = attrs.field(factory=dict)
    at: Optional[dt.datetime] = None
    fields: Mapping[str, Any] = attrs.field(factory=dict)
    idempotency_prefix: Optional[str] = None
    phone_field: str = "phone"
    recipient_fields: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        unknown = sorted(set(self.recipient_fields) - set(RECIPIENT_FIELDS))
        if unknown:
            raise ValidationError(f"recipient_fields: {', '.join(unknown)} cannot come from a "
                                  f"recipient (allowed: {', '.join(RECIPIENT_FIELDS)})")


@attrs.define  # not frozen: one is made per recipient, and frozen attrs classes are slower to make
class Parsed:
    """One recipient with its phone checked (step 1)."""

    index: int
    #: How outcomes name the recipient.
    label: str
    raw: object
    #: The template variables: the send's, then the recipient's own.
    context: Dict[str, Any]
    #: The E.164 number, or why the input is not one.
    phone: Union[str, ValidationError]
    #: Message fields the recipient gives itself (:attr:`SendSpec.recipient_fields`).
    own: Dict[str, str] = attrs.field(factory=dict)


#: ``prepare_message(message, context)``: the implementations' extra variables.
PrepareHook = Callable[[Message, Dict[str, Any]], Iterable[Optional[Mapping[str, Any]]]]
#: ``check_message(message)``: the implementations' veto reasons (``None``: no veto).
CheckHook = Callable[[Message], Iterable[Optional[object]]]


@attrs.frozen(kw_only=True)
class ComposeHooks:
    """The plugin hooks composing calls (``None``: no plugin implements it)."""

    prepare_message: Optional[PrepareHook] = None
    check_message: Optional[CheckHook] = None

    @classmethod
    def of(cls, relay: Any) -> ComposeHooks:
        """The hooks of a plugin hook relay (:attr:`smskit.SmsKit.hooks`). A hook nobody
        implements is left out, so no draft message is built for it."""
        prepare, check = relay.prepare_message, relay.check_message
        return cls(
            prepare_message=(lambda message, context: prepare(message=message, context=context))
            if prepare.get_hookimpls() else None,
            check_message=(lambda message: check(message=message))
            if check.get_hookimpls() else None,
        )


@attrs.frozen(kw_only=True)
class Facts:
    """What the store knew about a chunk's recipients, asked once before composing: the
    blacklisted numbers and the do-not-disturb rules (by E.164 number)."""

    blocked: AbstractSet[str] = frozenset()
    dnd: Mapping[str, DndRule] = attrs.field(factory=dict)


def parse_phone(phone: object, spec: SendSpec, composer: Composer) -> Parsed:
    """The one recipient of a single send; an invalid number raises
    :class:`~smskit.errors.InvalidPhoneError`."""
    e164 = composer.phone(phone)
    return Parsed(0, e164, phone, dict(spec.variables), e164)


def parse_recipients(chunk: Iterable[Tuple[int, Recipient]], spec: SendSpec,
                     composer: Composer) -> List[Parsed]:
    """Numbered recipients of a bulk send with their phones checked (an invalid one is kept,
    with the reason, to become a ``rejected`` record)."""
    out: List[Parsed] = []
    for index, recipient in chunk:
        raw: object
        context = dict(spec.variables)
        own: Dict[str, str] = {}
        # collections.abc's class, not typing's alias: the same answer, without the alias's
        # own __instancecheck__ (once per recipient)
        if isinstance(recipient, abc.Mapping):
            context.update(recipient)
            raw = recipient.get(spec.phone_field)
            for field, key in spec.recipient_fields.items():
                value = recipient.get(key)
                if value is not None and value is not False and str(value) != "":
                    own[field] = str(value)
        else:
            raw = recipient
        phone: Union[str, ValidationError]
        try:
            phone = composer.phone(raw)
        except ValidationError as exc:
            phone = exc
        out.append(Parsed(index, str(raw), raw, context, phone, own))
    return out


def phones_of(parsed: Iterable[Parsed]) -> List[str]:
    """The valid numbers of a chunk: what the store is asked about."""
    return [p.phone for p in parsed if isinstance(p.phone, str)]


def compose_drafts(
    parsed: Iterable[Parsed],
    spec: SendSpec,
    composer: Composer,
    facts: Facts,
    hooks: ComposeHooks,
    *,
    clock: Callable[[], dt.datetime],
    strict: bool = False,
) -> List[Draft]:
    """Steps 2 to 4 for each recipient: the ``prepare_message`` hook, the template, short
    links, segments and cost, quiet hours, the blacklist and ``check_message`` vetoes, the
    recipient's do-not-disturb rule.

    Bad input becomes a ``rejected`` draft with its own idempotency key (``strict``: raises
    instead, for a single send). ``clock`` stamps each message as it is composed.
    """
    return [_draft(item, spec, composer, facts, hooks, clock, strict) for item in parsed]


def _draft(item: Parsed, spec: SendSpec, composer: Composer, facts: Facts, hooks: ComposeHooks,
           clock: Callable[[], dt.datetime], strict: bool) -> Draft:
    index, label, raw, context, e164 = item.index, item.label, item.raw, item.context, item.phone
    prefix = spec.idempotency_prefix
    fields: Mapping[str, Any] = spec.fields
    own_key = item.own.get("idempotency_key")
    if item.own:
        fields = {**fields, **item.own}
        if own_key and prefix:
            own_key = fields["idempotency_key"] = f"{prefix}:{own_key}"
    if isinstance(e164, ValidationError):
        if strict:
            raise e164
        # Its own key: an unchanged re-run finds it, a corrected recipient is sent.
        key = f"{own_key}:rejected" if own_key else f"{prefix}:{label}:rejected" if prefix \
            else None
        message = composer.rejected(raw, spec.template.source, e164, now=clock(),
                                    **{**fields, "idempotency_key": key})
        return message, Outcome(index=index, recipient=label, message_id=message.id,
                                state=State.REJECTED, reason=str(e164))
    if prefix and not own_key:
        fields = {**fields, "idempotency_key": f"{prefix}:{e164}"}
    now = clock()
    message_id = new_id()
    if hooks.prepare_message is not None:  # the draft exists only for the plugins to look at
        draft = Message(id=message_id, phone=e164, body="", provider=composer.provider,
                        created_at=now, **fields)
        for extra in hooks.prepare_message(draft, context):
            if extra:
                for name, value in extra.items():
                    context.setdefault(name, value)
    try:
        body = composer.body(spec.template, context, recipient=label)
        # link tracking shortens only the template's own URLs, never a variable's
        spans = (template_spans(spec.template.render_pieces(context, recipient=label))
                 if composer.links is not None else None)
        message = composer.compose(e164, body, now=now, at=spec.at, id=message_id,
                                   template=spans, **fields)
    except ValidationError as exc:
        if strict:
            raise
        key = fields.get("idempotency_key")
        rejected = composer.rejected(e164, spec.template.source, exc, now=now, **{
            **fields, "idempotency_key": f"{key}:rejected" if key else None})
        return rejected, Outcome(index=index, recipient=label, message_id=rejected.id,
                                 state=State.REJECTED, reason=str(exc))
    reason = _veto(message, facts.blocked, hooks)
    if reason is not None:
        message = attrs.evolve(message, state=State.CANCELED, error_code="policy",
                               error_text=reason, scheduled_at=None)
        return message, Outcome(index=index, recipient=label, message_id=message.id,
                                state=State.CANCELED, reason=reason)
    deferred = message.scheduled_at if message.scheduled_at != spec.at else None
    rule = facts.dnd.get(e164)
    if rule is not None:
        try:
            later = dnd_next_allowed(rule, message.scheduled_at or now, tz=composer.timezone,
                                     quiet_hours=composer.quiet_for(message.provider))
        except ValidationError as exc:  # this recipient may never be messaged
            message = attrs.evolve(message, state=State.CANCELED, error_code="dnd",
                                   error_text=str(exc), scheduled_at=None)
            return message, Outcome(index=index, recipient=label, message_id=message.id,
                                    state=State.CANCELED, reason=str(exc))
        if later is not None:
            message = attrs.evolve(message, scheduled_at=later)
            deferred = later
    return message, Outcome(index=index, recipient=label, message_id=message.id,
                            state=State.OUTGOING, deferred_until=deferred)


def _veto(message: Message, blocked: AbstractSet[str], hooks: ComposeHooks) -> Optional[str]:
    """Why policy refuses ``message``: the blacklist first, then the plugins."""
    if message.phone in blocked:
        return "number is on the blacklist"
    if hooks.check_message is not None:
        for reason in hooks.check_message(message):
            if reason:
                return str(reason)
    return None


def settle(draft: Outcome, stored: AddOutcome) -> Outcome:
    """The recipient's outcome once the store has answered for its message."""
    message = stored.message
    if stored.created:
        if message.state is draft.state:
            return draft
        # The store settled the message differently (an Odoo row refused): say so.
        return attrs.evolve(draft, state=message.state, deferred_until=None,
                            reason=message.error_text or draft.reason)
    return Outcome(index=draft.index, recipient=draft.recipient, message_id=message.id,
                   state=message.state, reason="idempotency key already used", created=False)
