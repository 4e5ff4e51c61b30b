"""The provider conformance suite: every provider plugin runs it against its own provider.

Subclass :class:`ProviderConformance` in your plugin's tests, provide a ``provider`` fixture
and the ways to simulate what the gateway does when things go wrong::

    import contextlib
    from smskit.testing.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self, fake_gateway):
            p = MyProvider(base_url=fake_gateway.url, token="t", timeout=0.5)
            yield p
            p.close()

        @contextlib.contextmanager
        def gateway_unreachable(self, provider):
            with fake_gateway.refusing_connections():   # nothing can arrive
                yield

        @contextlib.contextmanager
        def timeout_after_accept(self, provider):
            with fake_gateway.hanging_after_accept():   # accepted, answer never comes
                yield

        def status_callback(self, provider, url, message, result):
            return {"content-type": "application/json"}, b'{"id": ..., "status": "delivered"}'

The suite checks the parts of :mod:`smskit.provider` the send pipeline relies on to never lose
or double-send a message:

* **sending**: one result per message, matched by our id; a full batch; a refused number
  ``rejected`` with a reason while the others go out (``refused_phone`` fixture);
* **the error contract**: a failure before the request left (:meth:`gateway_unreachable`)
  raises a :class:`~smskit.errors.ProviderError` with ``sent_nothing=True``, and the gateway
  then does not know the batch; a failure after the gateway accepted it
  (:meth:`timeout_after_accept`) raises one with ``sent_nothing=False``
  (:class:`~smskit.errors.AmbiguousSendError`; a provider sending one request per message
  raises :class:`~smskit.errors.PartialSendError` naming the messages it never sent), and
  :meth:`~smskit.provider.Provider.reconcile` then finds every message the gateway accepted;
* **settling ambiguous sends**: a provider without ``Capabilities(reconcile=True)`` fails unless
  it declares ``ambiguous_sends_need_a_person = True`` (its ambiguous batches then wait for a
  person: they are never sent twice, but never settled by themselves either);
* **webhooks**: declared media types the gate decodes, unknown bodies refused with
  :class:`~smskit.errors.ValidationError`, a delivery callback (:meth:`status_callback`) read
  through the real gate (:class:`~smskit.webhooks.gate.WebhookGate`) as the message's delivery,
  and, for a provider with its own check (``verify_webhook``), a tampered callback refused;
* the other capabilities it claims: status query, balance, blacklist, reply polling.

A hook you do not implement fails its check with what to do, unless you declare it
impossible: ``cannot_simulate = {"timeout_after_accept": "why"}``. A check of a capability the
provider does not claim is skipped; every skip is listed, with its reason, in the *smskit
conformance* section at the end of the pytest run (:mod:`smskit.testing.report`), so a provider
that claims nothing cannot pass quietly.
"""

from __future__ import annotations

from decimal import Decimal
from typing import (
    ContextManager,
    Dict,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)
from urllib.parse import urlsplit

import attrs
import pytest

from smskit.config import Secret
from smskit.errors import ConfigurationError, PartialSendError, ProviderError, ValidationError
from smskit.ids import new_id
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent, utcnow
from smskit.provider import Provider, contract_problems
from smskit.testing.report import CheckResult, collector, counts, suite_label
from smskit.webhooks.auth import WebhookPolicy
from smskit.webhooks.gate import KINDS, Accepted, WebhookGate, media_types, read_payload
from smskit.webhooks.media import ANY, FORM, JSON
from smskit.webhooks.request import WebhookRequest, parse_query

__all__ = ["HOOKS", "ProviderConformance", "ProviderReport", "expect", "sample_messages"]

#: The provider class under test (``ProviderConformance[MyProvider]`` types the hooks).
P = TypeVar("P", bound=Provider)

#: The simulations a test class provides, by hook name, and what each one lets the suite check.
HOOKS: Mapping[str, str] = {
    "gateway_unreachable": "that a failure before the request left raises a ProviderError "
                           "with sent_nothing=True",
    "timeout_after_accept": "that a failure after the gateway accepted the request raises a "
                            "ProviderError with sent_nothing=False (AmbiguousSendError)",
    "status_callback": "that a delivery callback passes the webhook gate and is read as the "
                       "message's delivery",
}
#: Bodies that decode as their media type but hold no callback any gateway sends.
_UNRECOGNISED = {
    JSON: (b"[]", b"{}", b'{"messages": "x"}', b"42", b'"text"', b"null"),
    FORM: (b"", b"unexpected=1"),
    ANY: (b"[]", b"{}", b"42", b"", b"unexpected=1", b"a[0][b]=1"),
}
_SAMPLE_PHONES = ["+5511987654321", "+5521998765432", "+5531991234567", "+5548991234567",
                  "+5561981234567", "+5571987651234", "+5585998761234", "+5541996543210"]
#: The smskit webhook token of the suite's gate, and the public URL callbacks are posted to.
WEBHOOK_TOKEN = "conformance-webhook-token"  # noqa: S105 - a test value, not a secret


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


def _needs(provider: Provider, flag: str) -> None:
    """Skip the running check unless ``provider`` claims the capability ``flag``."""
    if not getattr(provider.capabilities, flag):
        pytest.skip(f"Capabilities.{flag} is False: not claimed, not checked")


@attrs.frozen
class ProviderReport:
    """The outcome of one test class's run of the suite, as the end of the pytest run
    summarises it (:meth:`summary`)."""

    provider: str
    results: Tuple[CheckResult, ...]

    def summary(self) -> str:
        """The counts, then every failure and every skip with its reason."""
        lines = [f"provider conformance on {self.provider}: {counts(self.results)}"]
        for r in self.results:
            if r.status != "passed":
                detail = r.detail.replace("\n", "\n      ")
                word = "FAILED" if r.status == "failed" else r.status
                lines.append(f"  {word} {r.name} [{', '.join(r.parts)}]: {detail}")
        return "\n".join(lines)


#: Each check of the suite and what it is about (a capability, the contract, the errors).
_PARTS: Dict[str, Tuple[str, ...]] = {
    "declares_identity": ("contract",),
    "one_result_per_message": ("send",),
    "full_batch": ("send",),
    "refused_number_is_rejected": ("send",),
    "unreachable_gateway_sent_nothing": ("errors",),
    "timeout_after_accept_is_ambiguous": ("errors", "reconcile"),
    "ambiguous_sends_can_be_settled": ("reconcile",),
    "reconcile_knows_a_sent_batch": ("reconcile",),
    "reconcile_unknown_batch": ("reconcile",),
    "status_query_answers_for_a_sent_message": ("status_query",),
    "poll_statuses_names_our_messages": ("status_polling",),
    "webhook_media_types_are_decodable": ("webhooks",),
    "malformed_webhook_is_a_validation_error": ("webhooks",),
    "status_callback_passes_the_gate": ("webhooks",),
    "tampered_callback_is_refused": ("webhooks",),
    "balance_is_decimal": ("balance",),
    "blacklist_add_and_remove": ("blacklist",),
    "poll_replies_reads_inbound_messages": ("reply_polling",),
}


class ProviderConformance(Generic[P]):
    """Mix into a pytest class; supply the ``provider`` fixture and the simulation hooks.
    ``ProviderConformance[MyProvider]`` gives the hooks your provider's type."""

    #: Simulations this provider's tests cannot provide, by hook name (see :data:`HOOKS`),
    #: with the reason: their checks are then skipped, and the summary says why.
    cannot_simulate: Mapping[str, str] = {}

    # Python 3.8's ``Generic`` defines ``__new__``, and pytest will not collect a class that
    # has one ("cannot collect test class ... __new__ constructor"): every suite would be
    # silently empty there. Plain ``object.__new__`` is all a test class needs.
    __new__ = object.__new__

    @pytest.fixture
    def provider(self) -> Iterator[P]:  # pragma: no cover - overridden
        """Override: yield the provider under test."""
        raise NotImplementedError("subclasses provide a `provider` fixture")

    @pytest.fixture
    def refused_phone(self) -> Optional[str]:
        """Override: an E.164 number the provider will refuse (``None`` skips that test)."""
        return None

    def gateway_unreachable(self, provider: P) -> ContextManager[None]:
        """Override: a context in which ``provider`` cannot reach its gateway, so nothing it
        sends can arrive (a closed port, a refused connection, DNS failing)."""
        raise NotImplementedError

    def timeout_after_accept(self, provider: P) -> ContextManager[None]:
        """Override: a context in which the gateway accepts ``provider``'s next request and
        then never answers in time (or the connection drops before the answer). After it,
        the gateway must know the request, as the real one would."""
        raise NotImplementedError

    def status_callback(self, provider: P, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        """Override: the headers (``Content-Type`` included, and a signature if the gateway
        signs) and the body the gateway POSTs to ``url`` when ``message``, sent with
        ``result``, is delivered."""
        raise NotImplementedError

    # -- the suite's own plumbing -----------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _smskit_provider_report(self, request: pytest.FixtureRequest) -> None:
        """Count this test in the summary at the end of the run."""
        name = request.function.__name__[len("test_"):]
        if name not in _PARTS:  # a test of the author's own, next to the suite's
            return
        label = suite_label(request)
        seen: Dict[str, str] = {}

        def summarise(results: Sequence[CheckResult]) -> str:
            provider = seen.get("name", "a provider that was never built")
            return ProviderReport(provider=f"{provider} ({label})",
                                  results=tuple(results)).summary()

        collector(request.config).watch(request.node.nodeid, f"provider conformance {label}",
                                        name, _PARTS[name], summarise)
        provider = request.getfixturevalue("provider")
        seen["name"] = str(getattr(provider, "name", type(provider).__name__))

    def _simulate(self, hook: str, provider: P) -> ContextManager[None]:
        """The test class's ``hook`` context (see :meth:`_require`)."""
        self._require(hook)
        made: ContextManager[None] = getattr(self, hook)(provider)
        return made

    def _require(self, hook: str) -> None:
        """Skip the running check when ``hook`` is declared impossible; fail it, saying what
        to implement, when the test class does not implement it."""
        if hook in self.cannot_simulate:
            pytest.skip(f"declared impossible (cannot_simulate[{hook!r}]): "
                        f"{self.cannot_simulate[hook]}")
        if getattr(type(self), hook) is getattr(ProviderConformance, hook):
            raise AssertionError(
                f"{type(self).__name__} does not implement {hook}(provider), so the suite "
                f"cannot check {HOOKS[hook]}. Implement it, or declare it impossible with "
                f"cannot_simulate = {{{hook!r}: 'why'}}")

    # -- sending ------------------------------------------------------------------------------
    def test_declares_identity(self, provider: P) -> None:
        """A provider subclasses :class:`~smskit.provider.Provider`, names itself, its batch
        limit and its capabilities, and implements every operation a capability claims."""
        problems = contract_problems(provider)
        expect(not problems, f"breaks the provider contract: {'; '.join(problems)}")

    def test_one_result_per_message(self, provider: P) -> None:
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

    def test_full_batch(self, provider: P) -> None:
        """A batch of exactly ``max_batch`` messages (capped at 1000 here) is accepted whole."""
        size = min(provider.max_batch, 1000)
        messages = sample_messages(size, prefix="Lote cheio")
        results = provider.send_batch(messages, batch_id=new_id())
        expect(len(results) == size, f"{size} messages gave {len(results)} results")
        expect({r.message_id for r in results} == {m.id for m in messages},
               "results must name exactly the messages sent")

    def test_refused_number_is_rejected(self, provider: P,
                                        refused_phone: Optional[str]) -> None:
        """A refused number comes back ``rejected`` with a reason; the others still go out."""
        if refused_phone is None:
            pytest.skip("no refused_phone fixture: how a refused number is reported is "
                        "unchecked")
        good = sample_messages(1)[0]
        bad = Message(phone=refused_phone, body="Recusado", state=State.OUTGOING)
        results = {r.message_id: r for r in provider.send_batch([good, bad], batch_id=new_id())}
        expect(results[good.id].state is State.SENT, "the valid message must still be sent")
        expect(results[bad.id].state is State.REJECTED, "the refused number must be rejected")
        expect(results[bad.id].error_code or results[bad.id].error_text,
               "a rejection must say why")

    # -- the error contract -----------------------------------------------------------------
    def test_unreachable_gateway_sent_nothing(self, provider: P) -> None:
        """A failure before the request left raises a ProviderError with ``sent_nothing=True``
        (the pipeline sends the batch again later), and the gateway does not know the batch."""
        messages, batch_id = sample_messages(2), new_id()
        with self._simulate("gateway_unreachable", provider):
            error = _send_error(provider, messages, batch_id, "with the gateway unreachable")
        expect(error.sent_nothing,
               f"with the gateway unreachable, send_batch raised {type(error).__name__} with "
               "sent_nothing=False: nothing can have arrived, so say so (sent_nothing=True, "
               "e.g. TransientProviderError), or every such batch waits for reconciliation")
        if provider.capabilities.reconcile:
            answer = provider.reconcile(batch_id, messages)
            expect(not answer.known, "reconcile() knows a batch sent while the gateway was "
                   "unreachable: then something did arrive, and sent_nothing=True was wrong")

    def test_timeout_after_accept_is_ambiguous(self, provider: P) -> None:
        """A failure after the gateway accepted the request raises a ProviderError with
        ``sent_nothing=False`` (AmbiguousSendError), never one that lets the pipeline resend;
        :meth:`~smskit.provider.Provider.reconcile` then finds every message."""
        messages, batch_id = sample_messages(2), new_id()
        with self._simulate("timeout_after_accept", provider):
            error = _send_error(provider, messages, batch_id, "after the gateway accepted")
        expect(not error.sent_nothing,
               f"the gateway accepted the request, yet send_batch raised {type(error).__name__}"
               " with sent_nothing=True: the pipeline would send these messages twice; raise "
               "AmbiguousSendError when the request may have arrived")
        # A provider sending one request per message stops at the first that times out and
        # names the messages it never sent (PartialSendError.unsent): those the gateway lacks.
        unsent = set(error.unsent) if isinstance(error, PartialSendError) else set()
        expect(unsent < {m.id for m in messages}, "PartialSendError.unsent must name only "
               "messages of the batch, and not the one whose request timed out")
        if provider.capabilities.reconcile:
            answer = provider.reconcile(batch_id, messages)
            expect(answer.known, "reconcile() must know a batch the gateway accepted")
            found = {r.message_id: r for r in answer.results}
            accepted = {m.id for m in messages} - unsent
            expect(set(found) == accepted, "reconcile() must report every message the "
                   f"gateway accepted ({sorted(accepted)}), found {sorted(found)}")
            expect(all(r.state is State.SENT and r.provider_message_id for r in found.values()),
                   "reconciled messages must be sent, with the provider's ids")

    def test_ambiguous_sends_can_be_settled(self, provider: P) -> None:
        """An ambiguous batch is settled by asking the gateway (``Capabilities(reconcile=True)``),
        or the provider says that a person settles it (``ambiguous_sends_need_a_person``)."""
        person = provider.ambiguous_sends_need_a_person
        if provider.capabilities.reconcile:
            expect(not person, "ambiguous_sends_need_a_person = True contradicts "
                   "Capabilities(reconcile=True): choose one")
            return
        expect(person, "the provider has no way to confirm an ambiguous send: implement "
               "reconcile() with Capabilities(reconcile=True), or declare "
               "ambiguous_sends_need_a_person = True on the provider, so operators know that "
               "each ambiguous batch waits for a person")
        pytest.skip("declared: ambiguous sends need a person (no reconcile)")

    def test_reconcile_knows_a_sent_batch(self, provider: P) -> None:
        """After a send, reconciling the batch returns the accepted messages."""
        _needs(provider, "reconcile")
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

    def test_reconcile_unknown_batch(self, provider: P) -> None:
        """A batch the gateway never received is reported unknown (so it may be sent)."""
        _needs(provider, "reconcile")
        answer = provider.reconcile(new_id(), sample_messages(1))
        expect(not answer.known, "a batch never sent must be reported unknown")

    def test_status_query_answers_for_a_sent_message(self, provider: P) -> None:
        """``message_status`` reports a message just sent by its provider id, as sent or
        later."""
        _needs(provider, "status_query")
        (result,) = provider.send_batch(sample_messages(1), batch_id=new_id())
        expect(result.provider_message_id, "an accepted message must carry the provider's id")
        event = provider.message_status(str(result.provider_message_id))
        expect(isinstance(event, StatusEvent), "message_status() must return a StatusEvent")
        expect(event.provider == provider.name, "the event must name the provider")
        expect(event.state.rank >= State.SENT.rank,
               f"a message just sent cannot be {event.state.value}")

    def test_poll_statuses_names_our_messages(self, provider: P) -> None:
        """``poll_statuses`` answers for messages just sent with status events of this
        provider naming our message ids, as sent or later."""
        _needs(provider, "status_polling")
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

    # -- webhooks ---------------------------------------------------------------------------
    def test_webhook_media_types_are_decodable(self, provider: P) -> None:
        """A provider taking webhooks declares only media types the gate decodes."""
        _needs(provider, "webhooks")
        try:
            media_types(provider)
        except ConfigurationError as exc:
            raise AssertionError(str(exc)) from exc

    def test_malformed_webhook_is_a_validation_error(self, provider: P) -> None:
        """A well-encoded body the provider does not recognise raises ValidationError (the gate
        answers 400), never crashes."""
        _needs(provider, "webhooks")
        for media_type in media_types(provider):
            for kind in KINDS:
                for body in _UNRECOGNISED[media_type]:
                    request = WebhookRequest(provider=provider.name, kind=kind, body=body,
                                             headers={"content-type": media_type})
                    with pytest.raises(ValidationError):
                        read_payload(provider, request)  # decoded as the gate decodes

    def test_status_callback_passes_the_gate(self, provider: P) -> None:
        """The gateway's delivery callback for a sent message passes the webhook gate (token,
        media type, decoding, the provider's own check) and is read as that message's
        delivery."""
        _needs(provider, "webhooks")
        message, result, request = self._callback(provider)
        decision = _gate(provider).check(request)
        if not isinstance(decision, Accepted):
            raise AssertionError(f"the gate refused the delivery callback: {decision.status} "
                                 f"{decision.body}")
        ours = [e for e in decision.payload.statuses
                if e.message_id == message.id
                or (e.provider_message_id and e.provider_message_id == result.provider_message_id)]
        expect(ours, "the callback gave no status event naming the message (by our id or the "
               f"provider's): {list(decision.payload.statuses)}")
        expect(all(e.provider == provider.name for e in ours), "events must name the provider")
        expect(ours[-1].state is State.DELIVERED,
               f"a delivery callback must read as delivered, not {ours[-1].state.value}")

    def test_tampered_callback_is_refused(self, provider: P) -> None:
        """A provider with its own check of callbacks (``verify_webhook``) refuses one whose
        body was changed on the way (401 or 403)."""
        _needs(provider, "webhooks")
        if type(provider).verify_webhook is Provider.verify_webhook:
            pytest.skip("the provider adds no check of its own (verify_webhook): only the "
                        "smskit token protects its callbacks")
        _message, _result, request = self._callback(provider)
        tampered = attrs.evolve(request, body=_tamper(request.body))
        decision = _gate(provider).check(tampered)
        status = getattr(decision, "status", None)
        expect(status in (401, 403),
               f"a callback whose body was changed must be refused, the gate answered {decision}")

    def _callback(self, provider: P) -> Tuple[Message, SendResult, WebhookRequest]:
        (message,) = sample_messages(1, prefix="Callback")
        (result,) = provider.send_batch([message], batch_id=new_id())
        url = (f"https://smskit.example/webhooks/{provider.name}/status"
               f"?token={WEBHOOK_TOKEN}")
        self._require("status_callback")
        headers, body = self.status_callback(provider, url, message, result)
        request = WebhookRequest(provider=provider.name, kind="status", headers=headers,
                                 query=parse_query(urlsplit(url).query), body=body,
                                 client_host="127.0.0.1", url=url)
        return message, result, request

    # -- other capabilities -----------------------------------------------------------------
    def test_balance_is_decimal(self, provider: P) -> None:
        """The balance is an exact Decimal."""
        _needs(provider, "balance")
        expect(isinstance(provider.balance(), Decimal), "balance() must return a Decimal")

    def test_blacklist_add_and_remove(self, provider: P) -> None:
        """Numbers go on the gateway's blacklist and come off it without an error."""
        _needs(provider, "blacklist")
        phones = [m.phone for m in sample_messages(2)]
        provider.blacklist_add(phones)
        provider.blacklist_remove(phones)

    def test_poll_replies_reads_inbound_messages(self, provider: P) -> None:
        """Polling answers a list of inbound messages naming the provider."""
        _needs(provider, "reply_polling")
        replies = provider.poll_replies(None)
        expect(isinstance(replies, list), "poll_replies() must return a list")
        for reply in replies:
            expect(isinstance(reply, InboundMessage) and reply.provider == provider.name,
                   f"poll_replies() must return InboundMessages naming the provider: {reply!r}")


def _send_error(provider: Provider, messages: Sequence[Message], batch_id: str,
                when: str) -> ProviderError:
    """The ProviderError ``send_batch`` raises ``when`` something is wrong (failing the check
    if it returns, or raises something else)."""
    try:
        results = provider.send_batch(messages, batch_id=batch_id)
    except ProviderError as exc:
        return exc
    except Exception as exc:
        raise AssertionError(
            f"{when}, send_batch raised {type(exc).__name__}: {exc}; it must raise a "
            "smskit.errors.ProviderError saying whether anything was sent "
            "(sent_nothing)") from exc
    raise AssertionError(f"{when}, send_batch returned {len(results)} results instead of "
                         "raising a ProviderError")


def _gate(provider: Provider) -> WebhookGate:
    """A gate with a webhook secret, knowing only ``provider``."""
    policy = WebhookPolicy(secret=Secret(WEBHOOK_TOKEN))
    return WebhookGate(policy, lambda name: provider, known=[provider.name])


def _tamper(body: bytes) -> bytes:
    """``body`` with one character changed (a digit, else the last byte), same length."""
    for index in range(len(body) - 1, -1, -1):
        if chr(body[index]).isdigit():
            digit = b"1" if body[index:index + 1] != b"1" else b"2"
            return body[:index] + digit + body[index + 1:]
    return body[:-1] + (b"x" if body[-1:] != b"x" else b"y") if body else b"x"

