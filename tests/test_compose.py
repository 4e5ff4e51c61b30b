"""The send pipeline's core composes without a store, and a send asks the store once a chunk.

What an async kit will share with :class:`SmsKit`: :mod:`smskit.outbox.compose` turns a chunk
of recipients into messages from the facts looked up beforehand (blacklist, do-not-disturb) and
plain hook callables, and never touches the store itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

import attrs
import pytest

from smskit.config import Settings
from smskit.errors import InvalidPhoneError, MissingVariableError
from smskit.kit import SmsKit
from smskit.models import Message, State
from smskit.outbox.compose import (
    ComposeHooks,
    Composer,
    Facts,
    Outcome,
    SendSpec,
    compose_drafts,
    parse_recipients,
    phones_of,
    settle,
)
from smskit.policy import dnd_next_allowed
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import AddOutcome
from smskit.store.memory import MemoryStore
from smskit.store.outreach import Contact
from smskit.template import Template
from smskit.timeutil import zone

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")
NOON = dt.datetime(2024, 5, 10, 15, 0, tzinfo=UTC)  # a Friday, 12:00 in São Paulo
OK, BLOCKED, VETOED, RESTING = ("+5511987650001", "+5511987650002", "+5511987650003",
                                "+5511987650004")


def test_a_chunk_is_composed_from_the_facts_without_a_store() -> None:
    composer = Composer(provider="loopback", max_segments=1)
    spec = SendSpec(template=Template("Oi {{ nome }}, {{ extra }}"), variables={"nome": "Ana"},
                    fields={"campaign_id": "c1"}, idempotency_prefix="p")
    chunk = list(enumerate([OK, BLOCKED, VETOED, RESTING, "123",
                            {"phone": "+5511987650005", "extra": "x" * 200}]))
    parsed = parse_recipients(chunk, spec, composer)
    assert phones_of(parsed) == [OK, BLOCKED, VETOED, RESTING, "+5511987650005"]
    looked_at: List[str] = []

    def prepare(message: Message, context: Dict[str, Any]) -> Sequence[Optional[Mapping[str, Any]]]:
        looked_at.append(message.phone)
        return [{"extra": "tudo bem?", "nome": "not used: the caller's own variables win"}]

    def check(message: Message) -> Sequence[Optional[object]]:
        return [None, "plugin says no" if message.phone == VETOED else None]

    facts = Facts(blocked={BLOCKED},
                  dnd={RESTING: Contact(phone=RESTING, dnd_window="11:00-13:00")})
    drafts = compose_drafts(parsed, spec, composer, facts,
                            ComposeHooks(prepare_message=prepare, check_message=check),
                            clock=lambda: NOON)

    by = {o.index: (m, o) for m, o in drafts}
    ok, outcome = by[0]
    assert (ok.body, ok.state, ok.idempotency_key, ok.campaign_id) == (
        "Oi Ana, tudo bem?", State.OUTGOING, f"p:{OK}", "c1")
    assert outcome == Outcome(index=0, recipient=OK, message_id=ok.id, state=State.OUTGOING)
    assert [(by[i][1].state, by[i][1].reason) for i in (1, 2)] == [
        (State.CANCELED, "number is on the blacklist"), (State.CANCELED, "plugin says no")]
    resting, deferred = by[3]
    assert deferred.deferred_until == resting.scheduled_at == dt.datetime(2024, 5, 10, 13,
                                                                         tzinfo=SP)
    invalid, why = by[4]
    assert (invalid.state, invalid.error_code, invalid.idempotency_key, why.recipient) == (
        State.REJECTED, "invalid_phone", "p:123:rejected", "123")
    too_long = by[5][0]
    assert (too_long.state, too_long.error_code, too_long.idempotency_key) == (
        State.REJECTED, "too_long", "p:+5511987650005:rejected")
    assert looked_at == [OK, BLOCKED, VETOED, RESTING, "+5511987650005"]


def test_a_single_send_raises_for_bad_input() -> None:
    composer = Composer(provider="loopback")
    spec = SendSpec(template=Template("Oi {{ nome }}"))
    parsed = parse_recipients([(0, OK), (1, "123")], spec, composer)
    with pytest.raises(MissingVariableError, match="nome"):
        compose_drafts(parsed[:1], spec, composer, Facts(), ComposeHooks(), clock=lambda: NOON,
                       strict=True)
    with pytest.raises(InvalidPhoneError):
        compose_drafts(parsed[1:], spec, composer, Facts(), ComposeHooks(), clock=lambda: NOON,
                       strict=True)


def test_settle_reports_duplicates_and_what_the_store_decided() -> None:
    message = Message.new(OK, "Oi", state=State.OUTGOING, provider="loopback")
    draft = Outcome(index=3, recipient="(11) 98765-0001", message_id=message.id,
                    state=State.OUTGOING, deferred_until=NOON)
    assert settle(draft, AddOutcome(message=message, created=True)) is draft
    refused = attrs.evolve(message, state=State.REJECTED, error_text="Odoo refused the row")
    assert settle(draft, AddOutcome(message=refused, created=True)) == attrs.evolve(
        draft, state=State.REJECTED, deferred_until=None, reason="Odoo refused the row")
    earlier = attrs.evolve(message, id="earlier", state=State.SENT)
    assert settle(draft, AddOutcome(message=earlier, created=False)) == Outcome(
        index=3, recipient="(11) 98765-0001", message_id="earlier", state=State.SENT,
        reason="idempotency key already used", created=False)


def test_the_dnd_rule_is_a_function_of_the_rule_and_the_moment() -> None:
    @attrs.frozen
    class Rule:
        phone: str = OK
        dnd_window: Optional[str] = "20:00-09:00"
        dnd_days: Sequence[str] = ("sun",)
        dnd_until: Optional[dt.datetime] = None

    saturday_night = dt.datetime(2024, 5, 11, 21, tzinfo=SP)
    assert dnd_next_allowed(Rule(), saturday_night, tz="America/Sao_Paulo") == dt.datetime(
        2024, 5, 13, 9, tzinfo=SP)  # Sunday is skipped whole
    assert dnd_next_allowed(Rule(), dt.datetime(2024, 5, 10, 12, tzinfo=SP),
                            tz="America/Sao_Paulo") is None


class CountingStore(MemoryStore):
    """A memory store that counts the look-ups a send makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[str] = []

    def blacklisted(self, phones: Sequence[str]) -> Set[str]:
        self.calls.append(f"blacklisted:{len(phones)}")
        return super().blacklisted(phones)

    def is_blacklisted(self, phone: str) -> bool:
        self.calls.append("is_blacklisted")
        return super().is_blacklisted(phone)

    def dnd_contacts(self, phones: Sequence[str], now: dt.datetime) -> Dict[str, Contact]:
        self.calls.append(f"dnd_contacts:{len(phones)}")
        return super().dnd_contacts(phones, now)


def test_a_send_asks_the_store_once_per_chunk() -> None:
    store = CountingStore()
    kit = SmsKit(Settings.load(environ={}, provider="loopback"), store=store,
                 provider=LoopbackProvider(max_batch=3), clock=lambda: NOON)
    recipients = [f"+55119876500{i:02d}" for i in range(7)] + ["bad"]
    summary = kit.send_many(recipients, "Oi", dispatch=False, chunk_size=4)
    assert (summary.queued, summary.rejected) == (7, 1)
    assert store.calls == ["blacklisted:4", "dnd_contacts:4", "blacklisted:3", "dnd_contacts:3"]
    store.calls.clear()
    kit.send(OK, "Oi", dispatch=False)
    assert store.calls == ["is_blacklisted", "dnd_contacts:1"]
