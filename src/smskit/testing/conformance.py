"""The provider conformance suite: every provider plugin runs it against its own factory.

Subclass :class:`ProviderConformance` in your plugin's tests and provide a ``provider``
fixture (and optionally ``refused_phone``)::

    from smskit.testing.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self):
            p = MyProvider(base_url=..., token=...)
            yield p
            p.close()

The suite checks the parts of :mod:`smskit.provider` the send pipeline relies on to never lose
or double-send a message: one result per message, ids matched back by our message id,
reconciliation that knows what was sent and what was not, webhook media types the gate can
decode, and clean errors on webhook bodies the provider does not recognise.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Iterator, List, Optional

import attrs
import pytest

from smskit.errors import ConfigurationError, ValidationError
from smskit.ids import new_id
from smskit.models import Message, State, StatusEvent, utcnow
from smskit.provider import Provider, contract_problems
from smskit.webhooks.gate import KINDS, media_types, read_payload
from smskit.webhooks.media import FORM, JSON
from smskit.webhooks.request import WebhookRequest

__all__ = ["ProviderConformance", "sample_messages"]

#: Bodies that decode as their media type but hold no callback any gateway sends.
_UNRECOGNISED = {
    JSON: (b"[]", b"{}", b'{"messages": "x"}', b"42", b'"text"', b"null"),
    FORM: (b"", b"unexpected=1"),
}
_SAMPLE_PHONES = ["+5511987654321", "+5521998765432", "+5531991234567", "+5548991234567",
                  "+5561981234567", "+5571987651234", "+5585998761234", "+5541996543210"]


def sample_messages(count: int, prefix: str = "Teste de conformidade") -> List[Message]:
    """``count`` outgoing messages to distinct valid Brazilian mobile numbers."""
    messages = []
    for i in range(count):
        if i < len(_SAMPLE_PHONES):
            phone = _SAMPLE_PHONES[i]
        else:
            phone = f"+55119{(10_000_000 + i) % 100_000_000:08d}"
        messages.append(Message(phone=phone, body=f"{prefix} {i}", state=State.OUTGOING))
    return messages


def expect(condition: object, message: str) -> None:
    """Fail the running test with ``message`` unless ``condition`` holds.

    Used instead of ``assert`` so the checks survive ``python -O`` and explain themselves
    without pytest's assertion rewriting (this module is imported, not collected).
    """
    if not condition:
        raise AssertionError(message)


class ProviderConformance:
    """Mix into a pytest class; supply the ``provider`` fixture."""

    @pytest.fixture
    def provider(self) -> Iterator[Provider]:  # pragma: no cover - overridden
        """Override: yield the provider under test."""
        raise NotImplementedError("subclasses provide a `provider` fixture")

    @pytest.fixture
    def refused_phone(self) -> Optional[str]:
        """Override: an E.164 number the provider will refuse (``None`` skips that test)."""
        return None

    def test_declares_identity(self, provider: Provider) -> None:
        """A provider subclasses :class:`~smskit.provider.Provider`, names itself, its batch
        limit and its capabilities, and implements every operation a capability claims."""
        problems = contract_problems(provider)
        expect(not problems, f"breaks the provider contract: {'; '.join(problems)}")

    def test_one_result_per_message(self, provider: Provider) -> None:
        """Every message of a batch gets exactly one result, matched by our id."""
        messages = sample_messages(min(3, provider.max_batch))
        results = provider.send_batch(messages, batch_id=new_id())
        expect(sorted(r.message_id for r in results) == sorted(m.id for m in messages),
               "send_batch must return exactly one result per message, keyed by our id")
        expect(all(r.state is State.SENT for r in results),
               f"valid messages must be sent, got {[r.state for r in results]}")
        provider_ids = [r.provider_message_id for r in results]
        expect(all(provider_ids), "accepted messages must carry the provider's id")
        expect(len(set(provider_ids)) == len(provider_ids), "provider ids must be distinct")

    def test_full_batch(self, provider: Provider) -> None:
        """A batch of exactly ``max_batch`` messages (capped at 1000 here) is accepted whole."""
        size = min(provider.max_batch, 1000)
        messages = sample_messages(size, prefix="Lote cheio")
        results = provider.send_batch(messages, batch_id=new_id())
        expect(len(results) == size, f"{size} messages gave {len(results)} results")
        expect({r.message_id for r in results} == {m.id for m in messages},
               "results must name exactly the messages sent")

    def test_refused_number_is_rejected(self, provider: Provider,
                                        refused_phone: Optional[str]) -> None:
        """A refused number comes back ``rejected`` with a reason; the others still go out."""
        if refused_phone is None:
            pytest.skip("no refused_phone fixture for this provider")
        good = sample_messages(1)[0]
        bad = Message(phone=refused_phone, body="Recusado", state=State.OUTGOING)
        results = {r.message_id: r for r in provider.send_batch([good, bad], batch_id=new_id())}
        expect(results[good.id].state is State.SENT, "the valid message must still be sent")
        expect(results[bad.id].state is State.REJECTED, "the refused number must be rejected")
        expect(results[bad.id].error_code or results[bad.id].error_text,
               "a rejection must say why")

    def test_reconcile_knows_a_sent_batch(self, provider: Provider) -> None:
        """After a send, reconciling the batch returns the accepted messages."""
        if not provider.capabilities.reconcile:
            pytest.skip("provider cannot reconcile")
        messages = sample_messages(2)
        batch_id = new_id()
        sent = provider.send_batch(messages, batch_id=batch_id)
        answer = provider.reconcile(batch_id, messages)
        expect(answer.known, "a batch that was sent must be known to reconcile()")
        expect({r.message_id for r in answer.results} == {r.message_id for r in sent},
               "reconcile() must report every accepted message")
        by_id = {r.message_id: r for r in answer.results}
        for result in sent:
            expect(by_id[result.message_id].provider_message_id == result.provider_message_id,
                   "reconcile() must report the same provider ids as send_batch()")

    def test_reconcile_unknown_batch(self, provider: Provider) -> None:
        """A batch the gateway never received is reported unknown (so it may be sent)."""
        if not provider.capabilities.reconcile:
            pytest.skip("provider cannot reconcile")
        answer = provider.reconcile(new_id(), sample_messages(1))
        expect(not answer.known, "a batch never sent must be reported unknown")

    def test_status_query_answers_for_a_sent_message(self, provider: Provider) -> None:
        """``message_status`` reports a message just sent by its provider id, as sent or
        later."""
        if not provider.capabilities.status_query:
            pytest.skip("provider cannot be asked about one message")
        (result,) = provider.send_batch(sample_messages(1), batch_id=new_id())
        expect(result.provider_message_id, "an accepted message must carry the provider's id")
        event = provider.message_status(str(result.provider_message_id))
        expect(isinstance(event, StatusEvent), "message_status() must return a StatusEvent")
        expect(event.provider == provider.name, "the event must name the provider")
        expect(event.state.rank >= State.SENT.rank,
               f"a message just sent cannot be {event.state.value}")

    def test_poll_statuses_names_our_messages(self, provider: Provider) -> None:
        """``poll_statuses`` answers for messages just sent with status events of this
        provider naming our message ids, as sent or later."""
        if not provider.capabilities.status_polling:
            pytest.skip("provider cannot poll statuses")
        messages = sample_messages(2)
        results = {r.message_id: r for r in provider.send_batch(messages, batch_id=new_id())}
        sent = [attrs.evolve(m, state=State.SENT, sent_at=utcnow(),
                             provider_message_id=results[m.id].provider_message_id,
                             provider_request_id=results[m.id].provider_request_id)
                for m in messages if m.id in results]
        events = provider.poll_statuses(sent)
        expect(all(isinstance(e, StatusEvent) for e in events),
               "poll_statuses() must return StatusEvents")
        expect({e.message_id for e in events} <= {m.id for m in sent},
               "every event must name one of the messages asked about, by our id")
        expect(all(e.provider == provider.name and e.state.rank >= State.SENT.rank
                   for e in events), "events of this provider, sent or later")

    def test_webhook_media_types_are_decodable(self, provider: Provider) -> None:
        """A provider taking webhooks declares only media types the gate decodes."""
        if not provider.capabilities.webhooks:
            pytest.skip("provider has no webhooks")
        try:
            media_types(provider)
        except ConfigurationError as exc:
            raise AssertionError(str(exc)) from exc

    def test_malformed_webhook_is_a_validation_error(self, provider: Provider) -> None:
        """A well-encoded body the provider does not recognise raises ValidationError (the gate
        answers 400), never crashes."""
        if not provider.capabilities.webhooks:
            pytest.skip("provider has no webhooks")
        for media_type in media_types(provider):
            for kind in KINDS:
                for body in _UNRECOGNISED[media_type]:
                    request = WebhookRequest(provider=provider.name, kind=kind, body=body,
                                             headers={"content-type": media_type})
                    with pytest.raises(ValidationError):
                        read_payload(provider, request)  # decoded as the gate decodes

    def test_balance_is_decimal(self, provider: Provider) -> None:
        """The balance is an exact Decimal."""
        if not provider.capabilities.balance:
            pytest.skip("provider has no balance")
        expect(isinstance(provider.balance(), Decimal), "balance() must return a Decimal")
