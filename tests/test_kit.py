"""The send pipeline end to end on the loopback provider: bad input, failures mid-batch,
reconciliation, policy and hooks. Nothing is lost and nothing is sent twice."""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, Iterator, List, Optional

import pytest

import smskit
from smskit.config import Settings
from smskit.errors import (
    AmbiguousSendError,
    BodyTooLongError,
    ConfigurationError,
    EmptyBodyError,
    InvalidPhoneError,
    MissingVariableError,
    RateLimitedError,
    RequestRejectedError,
    ValidationError,
)
from smskit.kit import Outcome, SmsKit
from smskit.models import Direction, InboundMessage, Message, State, StatusEvent
from smskit.providers.loopback import LoopbackProvider
from smskit.store.memory import MemoryStore

NOON = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.timezone.utc)  # 12:00 in São Paulo


class Clock:
    def __init__(self, now: dt.datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider() -> LoopbackProvider:
    return LoopbackProvider(max_batch=3)


def make_kit(provider: LoopbackProvider, clock: Clock, **settings: Any) -> SmsKit:
    return SmsKit(Settings.load(environ={}, provider="loopback", **settings),
                  store=MemoryStore(), provider=provider, clock=clock)


@pytest.fixture
def kit(provider: LoopbackProvider, clock: Clock) -> Iterator[SmsKit]:
    k = make_kit(provider, clock)
    yield k
    k.close()


def all_messages(kit: SmsKit) -> List[Message]:
    return kit.store.list_messages(limit=10_000)


def phones(n: int) -> List[str]:
    return [f"1198765{i:04d}" for i in range(n)]


# -- single sends -----------------------------------------------------------------------

def test_send_renders_counts_and_sends(kit: SmsKit, provider: LoopbackProvider) -> None:
    out = kit.send("(11) 98765-4321", "Olá {{ nome }}, fatura de {{ v }}", variables={"nome": "Ana",
                                                                                     "v": "R$ 10"})
    msg = kit.get(out.message_id or "")
    assert msg is not None and msg.state is State.SENT
    assert msg.body == "Olá Ana, fatura de R$ 10" and msg.encoding == "UCS-2" and msg.segments == 1
    assert msg.cost == Settings().price_per_segment
    assert [r.message_id for r in provider.sent] == [msg.id]


@pytest.mark.parametrize(("phone", "text", "variables", "error", "text_in_error"), [
    ("(11) 3333-444", "Oi", {}, InvalidPhoneError, "'(11) 3333-444'"),
    ("11987654321", "   ", {}, EmptyBodyError, "+5511987654321"),
    ("11987654321", "Olá {{ nome }}", {}, MissingVariableError, "'nome'"),
    ("11987654321", "x" * 2000, {}, BodyTooLongError, "over the cap of 10"),
])
def test_single_send_bad_input_raises_and_stores_nothing(
    kit: SmsKit, provider: LoopbackProvider, phone: str, text: str,
    variables: Dict[str, str], error: type, text_in_error: str,
) -> None:
    with pytest.raises(error) as info:
        kit.send(phone, text, variables=variables)
    assert text_in_error in str(info.value)
    assert all_messages(kit) == [] and provider.calls == []


@pytest.mark.parametrize("dispatch", [True, False])
def test_an_unknown_provider_stores_nothing_even_without_dispatching(
    kit: SmsKit, provider: LoopbackProvider, dispatch: bool
) -> None:
    # Stored without dispatching, it would wait for a worker that can never send it.
    with pytest.raises(ConfigurationError, match="unknown provider 'kolmyea'.*loopback"):
        kit.send_many(phones(2), "Oi", provider="kolmyea", dispatch=dispatch)
    with pytest.raises(ConfigurationError, match="unknown provider 'kolmyea'"):
        kit.send("11987654321", "Oi", provider="kolmyea", dispatch=dispatch)
    assert all_messages(kit) == [] and provider.calls == []


def test_idempotency_key_sends_once(kit: SmsKit, provider: LoopbackProvider) -> None:
    first = kit.send("11987654321", "Boleto 123", idempotency_key="boleto-123")
    second = kit.send("11987654321", "Boleto 123", idempotency_key="boleto-123")
    assert first.created and not second.created
    assert second.message_id == first.message_id and second.state is State.SENT
    assert len(provider.sent) == 1 and len(all_messages(kit)) == 1


# -- bulk ---------------------------------------------------------------------------------

def test_bulk_never_aborts_for_one_bad_recipient(kit: SmsKit, provider: LoopbackProvider) -> None:
    rows = [{"phone": "11987650001", "nome": "Ana"}, {"phone": "12", "nome": "Bia"},
            {"phone": "11987650003"}, {"phone": "11987650004", "nome": "Caio"}]
    outcomes: List[Outcome] = []
    summary = kit.send_many(rows, "Oi {{ nome }}", on_outcome=outcomes.append)
    assert (summary.total, summary.sent, summary.rejected) == (4, 2, 2)
    by_index = {o.index: o for o in outcomes}
    assert "invalid phone number '12'" in (by_index[1].reason or "")
    assert by_index[2].reason == "template variable 'nome' is missing for recipient 11987650003"
    stored = {m.id: m for m in all_messages(kit)}
    assert len(stored) == 4, "rejected recipients are kept as records, not lost"
    assert stored[by_index[1].message_id or ""].error_code == "invalid_phone"
    assert stored[by_index[2].message_id or ""].error_code == "missing_variable"
    assert sorted(r.body for r in provider.sent) == ["Oi Ana", "Oi Caio"]


def test_bulk_streams_in_provider_sized_chunks(kit: SmsKit, provider: LoopbackProvider) -> None:
    pulled: List[int] = []

    def rows() -> Iterator[str]:
        for i, phone in enumerate(phones(10)):
            pulled.append(i)
            # Before row 6 is read, the first chunk of 3 is sent and the second is stored
            # (its request may still be out while the third is read and stored): streaming,
            # never more than one chunk ahead of the gateway.
            if i == 6:
                assert len(provider.sent) >= 3
                assert len(kit.store.list_messages(limit=100)) == 6
            yield phone

    summary = kit.send_many(rows(), "Promoção")
    assert summary.sent == 10 and len(pulled) == 10
    assert [n for _, n in provider.calls] == [3, 3, 3, 1]


def test_bulk_rerun_with_prefix_skips_recipients_already_stored(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    kit.send_many(phones(4), "Campanha", idempotency_prefix="camp-1")
    again = kit.send_many(phones(5), "Campanha", idempotency_prefix="camp-1")
    assert again.duplicates == 4 and again.sent == 1
    assert all(n == 1 for n in provider.accepted_counts().values())
    assert len(provider.sent) == 5


def test_bulk_rows_keyed_by_their_own_field_are_sent_once_each(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    # two rows to one number are two messages; a re-run of the same rows sends nothing
    rows = [{"phone": "11987650001", "sms": 7, "who": "res.partner,3"},
            {"phone": "11987650001", "sms": 8},
            {"phone": "12ab", "sms": 9}]
    fields = {"idempotency_key": "sms", "partner_ref": "who"}
    first = kit.send_many(rows, "Oi", idempotency_prefix="odoo", recipient_fields=fields)
    again = kit.send_many(rows, "Oi", idempotency_prefix="odoo", recipient_fields=fields)
    assert (first.sent, first.rejected) == (2, 1)
    assert (again.sent, again.duplicates) == (0, 3)
    assert len(provider.sent) == 2
    stored = {m.idempotency_key: m for m in all_messages(kit)}
    assert set(stored) == {"odoo:7", "odoo:8", "odoo:9:rejected"}
    assert stored["odoo:7"].partner_ref == "res.partner,3"
    assert stored["odoo:8"].partner_ref is None
    with pytest.raises(ValidationError):
        kit.send_many(rows, "Oi", recipient_fields={"body": "sms"})


# -- failures mid-batch --------------------------------------------------------------------

def test_timeout_after_accept_is_reconciled_not_resent(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    summary = kit.send_many(phones(2), "Oi", dispatch=False)
    assert summary.queued == 2
    # The gateway accepts the request, then the answer is lost.
    provider.fail_next(AmbiguousSendError("read timeout"), after_accept=True)
    report = kit.dispatch()
    assert report.ambiguous == 2
    assert {m.state for m in all_messages(kit)} == {State.OUTGOING}
    assert kit.dispatch().batches == 0, "an ambiguous batch is never dispatched again"
    rec = kit.reconcile()
    assert rec.confirmed == 2 and rec.resendable == 0
    assert {m.state for m in all_messages(kit)} == {State.SENT}
    assert all(n == 1 for n in provider.accepted_counts().values())


def test_request_that_never_arrived_is_sent_once_after_reconcile(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    kit.send("+5521998765432", "Primeira")  # an accepted request: proves the lookup
    provider.fail_next(AmbiguousSendError("connection reset"), after_accept=False)
    kit.send_many(phones(3), "Oi")
    assert len(provider.sent) == 1
    rec = kit.reconcile()
    assert rec.resendable == 3
    kit.dispatch()
    assert provider.accepted_counts() and all(
        n == 1 for n in provider.accepted_counts().values())
    assert {m.state for m in all_messages(kit)} == {State.SENT}


def test_request_that_never_arrived_is_held_until_the_lookup_is_proven(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    provider.fail_next(AmbiguousSendError("connection reset"), after_accept=False)
    summary = kit.send_many(phones(3), "Oi")
    assert (summary.held, summary.sent, summary.queued) == (3, 0, 0)
    rec = kit.reconcile()
    assert (rec.resendable, rec.held) == (0, 3)
    assert kit.dispatch().batches == 0
    assert [len(b.message_ids) for b in kit.held()] == [3]


def test_provider_raising_mid_batch_keeps_earlier_results(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    kit.send_many(phones(8), "Oi", dispatch=False)
    # Batch 1 succeeds, batch 2 explodes after being accepted, batch 3 is never attempted.
    real_send = provider.send_batch
    calls = {"n": 0}

    def flaky(messages: List[Message], *, batch_id: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            real_send(messages, batch_id=batch_id)
            raise AmbiguousSendError("read timeout after accept")
        return real_send(messages, batch_id=batch_id)

    provider.send_batch = flaky  # type: ignore[method-assign]
    report = kit.dispatch()
    states = [m.state for m in all_messages(kit)]
    assert report.sent == 3 and report.ambiguous == 3
    assert states.count(State.SENT) == 3 and states.count(State.OUTGOING) == 5
    kit.reconcile()
    kit.dispatch()
    assert {m.state for m in all_messages(kit)} == {State.SENT}
    assert len(provider.sent) == 8
    assert all(n == 1 for n in provider.accepted_counts().values())


def test_unexpected_exception_marks_batch_ambiguous(kit: SmsKit,
                                                    provider: LoopbackProvider) -> None:
    kit.send_many(phones(2), "Oi", dispatch=False)

    def broken(messages: List[Message], *, batch_id: str) -> Any:
        raise RuntimeError("bug in provider")

    provider.send_batch = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        kit.dispatch()
    assert [b.status for b in kit.store.batches()] == ["ambiguous"]
    assert kit.dispatch().batches == 0


def test_rate_limited_batch_goes_back_to_the_queue(kit: SmsKit, provider: LoopbackProvider,
                                                   clock: Clock) -> None:
    provider.fail_next(RateLimitedError("slow down", retry_after=120))
    summary = kit.send_many(phones(2), "Oi")
    assert summary.sent == 0 and summary.failed_dispatch == 2
    assert kit.dispatch().batches == 0, "not due before Retry-After"
    clock.now += dt.timedelta(seconds=121)
    assert kit.dispatch().sent == 2
    assert {m.attempts for m in all_messages(kit)} == {1}


def test_gateway_refusing_the_request_rejects_with_its_reason(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    provider.fail_next(RequestRejectedError("422: Undefined array key \"phone\""))
    kit.send_many(phones(2), "Oi")
    assert {(m.state, m.error_code) for m in all_messages(kit)} == {(State.REJECTED, "request")}


# -- policy ------------------------------------------------------------------------------

def test_blacklisted_number_is_canceled(kit: SmsKit, provider: LoopbackProvider) -> None:
    kit.blacklist_add("11987650000", reason="pediu", source="test")
    out = kit.send("11987650000", "Oi")
    assert out.state is State.CANCELED and out.reason == "number is on the blacklist"
    assert provider.sent == []


def test_blacklist_is_checked_again_at_dispatch(kit: SmsKit, provider: LoopbackProvider) -> None:
    out = kit.send("11987650000", "Oi", dispatch=False)
    kit.blacklist_add("11987650000")
    kit.dispatch()
    msg = kit.get(out.message_id or "")
    assert msg is not None and msg.state is State.CANCELED and provider.sent == []


def test_quiet_hours_defer_and_never_drop(provider: LoopbackProvider, clock: Clock) -> None:
    kit = make_kit(provider, clock, quiet_hours="21:00-08:00")
    clock.now = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.timezone.utc)  # 22:30 in SP
    out = kit.send("11987654321", "Boa noite")
    assert out.state is State.OUTGOING
    assert out.deferred_until == dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.timezone.utc)
    assert provider.sent == []
    clock.now = dt.datetime(2026, 11, 27, 11, 0, 1, tzinfo=dt.timezone.utc)
    assert kit.dispatch().sent == 1


def test_check_message_veto_and_prepare_message_variables(kit: SmsKit,
                                                          provider: LoopbackProvider) -> None:
    class Plugin:
        @smskit.hookimpl
        def prepare_message(self, message: Message, context: Any) -> Dict[str, str]:
            return {"empresa": "ACME", "nome": "ignored: the caller's value wins"}

        @smskit.hookimpl
        def check_message(self, message: Message) -> Optional[str]:
            return "número de teste" if message.phone.endswith("0000") else None

    kit.plugins.register(Plugin())
    ok = kit.send("11987654321", "{{ nome }} da {{ empresa }}", variables={"nome": "Ana"})
    vetoed = kit.send("11987650000", "{{ nome }}", variables={"nome": "Bia"})
    assert [r.body for r in provider.sent] == ["Ana da ACME"] and ok.state is State.SENT
    assert vetoed.state is State.CANCELED and vetoed.reason == "número de teste"


def test_failing_hook_is_recorded_and_loses_nothing(kit: SmsKit,
                                                    provider: LoopbackProvider) -> None:
    class Broken:
        @smskit.hookimpl
        def message_sent(self, message: Message) -> None:
            raise RuntimeError("chatter down")

    kit.plugins.register(Broken())
    out = kit.send("11987654321", "Oi")
    assert out.state is State.SENT and len(provider.sent) == 1
    kinds = [(e.kind, e.detail) for e in kit.history(out.message_id or "")]
    assert any(k == "hook_error" and "chatter down" in d for k, d in kinds)


# -- status and inbound --------------------------------------------------------------------

def test_status_events_forward_only_and_unknown_recorded(kit: SmsKit,
                                                         provider: LoopbackProvider) -> None:
    out = kit.send("11987654321", "Oi")
    mid = out.message_id or ""
    assert kit.apply_status(provider.status_event(mid, State.DELIVERED)).applied
    late = kit.apply_status(provider.status_event(mid, State.SENT))
    assert not late.applied and "final" in late.reason
    msg = kit.get(mid)
    assert msg is not None and msg.state is State.DELIVERED
    history = kit.history(mid)
    assert [h.applied for h in history if h.kind == "status"][-2:] == [True, False]
    orphan = kit.apply_status(StatusEvent(provider="loopback", message_id="nope",
                                          state=State.DELIVERED))
    assert orphan.message is None and not orphan.applied
    assert [e.message_id for e in kit.store.orphan_events()] == [None]


def test_status_changed_hook_fires_once(kit: SmsKit, provider: LoopbackProvider) -> None:
    seen: List[Any] = []

    class Watcher:
        @smskit.hookimpl
        def message_status_changed(self, message: Message, old: State, new: State) -> None:
            seen.append((message.id, old, new))

    kit.plugins.register(Watcher())
    mid = kit.send("11987654321", "Oi").message_id or ""
    for _ in range(3):
        kit.apply_status(provider.status_event(mid, State.DELIVERED))
    assert seen == [(mid, State.SENT, State.DELIVERED)]


@pytest.mark.parametrize("batched", [False, True], ids=["apply_status", "apply_statuses"])
def test_a_status_saying_the_recipient_opted_out_blacklists_the_number(
        kit: SmsKit, batched: bool) -> None:
    outcome = kit.send("+5511987654321", "Oi")
    message = kit.get(outcome.message_id)
    assert message is not None and message.provider_message_id
    event = StatusEvent(provider="loopback", state=State.ERROR,
                        provider_message_id=message.provider_message_id, error_code="21610",
                        opted_out=True)
    for _ in range(2):  # a repeated callback blacklists once
        if batched:
            kit.apply_statuses([event])
        else:
            kit.apply_status(event)
    assert kit.store.is_blacklisted("+5511987654321")
    assert [e.detail for e in kit.history(message.id) if e.kind == "optout"] == [
        "recipient opted out at the gateway (21610)"]
    again = kit.send("+5511987654321", "De novo")
    assert again.state is State.CANCELED


def test_reply_recorded_once_and_optout_applied(kit: SmsKit) -> None:
    received: List[str] = []

    class Router:
        @smskit.hookimpl
        def message_received(self, message: Message) -> None:
            received.append(message.body)

    kit.plugins.register(Router())
    reply = InboundMessage(provider="loopback", provider_reply_id="77", phone="5511987654321",
                           body="Sair")
    first = kit.receive(reply)
    second = kit.receive(reply)
    assert first.created and not second.created
    assert first.message.phone == "+5511987654321"
    assert first.message.direction is Direction.INBOUND
    assert kit.store.is_blacklisted("+5511987654321")
    assert received == ["Sair"]
    assert kit.send("11987654321", "Promo").state is State.CANCELED


def test_request_level_rejection_reaches_every_message_of_the_batch(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    kit.send_many(phones(2), "Oi")
    (batch,) = kit.store.batches()
    kit.apply_status(StatusEvent(provider="loopback", state=State.REJECTED, batch_id=batch.id,
                                 error_code="request_rejected", error_text="conteúdo proibido"))
    assert {(m.state, m.error_text) for m in all_messages(kit)} == {
        (State.REJECTED, "conteúdo proibido")}


def test_rerun_records_a_rejection_once_and_sends_the_corrected_row(
        kit: SmsKit, provider: LoopbackProvider) -> None:
    rows = [{"phone": "11987650001", "nome": "Ana"}, {"phone": "11987650002"}]
    first = kit.send_many(rows, "Oi {{ nome }}", idempotency_prefix="p")
    again = kit.send_many(rows, "Oi {{ nome }}", idempotency_prefix="p")
    assert (first.sent, first.rejected) == (1, 1)
    assert (again.sent, again.rejected, again.duplicates) == (0, 0, 2)
    fixed = kit.send_many([{"phone": "11987650002", "nome": "Bia"}], "Oi {{ nome }}",
                          idempotency_prefix="p")
    assert fixed.sent == 1
    assert sorted(r.body for r in provider.sent) == ["Oi Ana", "Oi Bia"]
    assert len(all_messages(kit)) == 3


def test_a_reply_with_a_lone_surrogate_is_kept_not_lost(provider: LoopbackProvider,
                                                         clock: Clock, tmp_path: Any) -> None:
    from smskit.store.sql import SqlStore

    kit = SmsKit(Settings.load(environ={}, provider="loopback"),
                 store=SqlStore(f"sqlite:///{tmp_path / 'r.db'}"), provider=provider, clock=clock)
    try:
        outcome = kit.receive(InboundMessage(provider="loopback", provider_reply_id="s-1",
                                             phone="+5511987654321", body="ok \ud800 \U0001f600"))
        assert outcome.created
        stored = kit.get(outcome.message.id)
        assert stored is not None and stored.body == "ok \ufffd \U0001f600"
    finally:
        kit.close()
