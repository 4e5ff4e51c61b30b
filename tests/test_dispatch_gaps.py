"""Batches that do not end cleanly, on the memory, SQLite and PostgreSQL stores: a message the
provider returned no result for is reconciled (never left ``outgoing`` for ever), and a batch
that stopped part-way (:class:`PartialSendError`) records what went out, puts back what never
did and reconciles only what may have. Nothing is lost and nothing is sent twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from smskit import outbox
from smskit.errors import AmbiguousSendError, PartialSendError, RateLimitedError
from smskit.models import Message, SendResult, State
from smskit.provider import Capabilities, Provider, ReconcileResult
from smskit.store.base import KIND_REROUTED, Requeue, Store
from smskit.store.memory import MemoryStore
from store_helpers import STORE_KINDS, open_store

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=UTC)

Script = Callable[[Sequence[Message]], List[SendResult]]


class Gateway(Provider):
    """A gateway that follows a script per request and remembers every message it took."""

    name = "fake"
    max_batch = 10
    capabilities = Capabilities(reconcile=True)

    def __init__(self) -> None:
        self.scripts: List[Script] = []
        self.taken: Dict[str, int] = {}

    def take(self, message: Message) -> SendResult:
        self.taken[message.id] = self.taken.get(message.id, 0) + 1
        return SendResult(message_id=message.id, state=State.SENT,
                          provider_message_id=f"P-{message.id}")

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        script = self.scripts.pop(0) if self.scripts else None
        if script is None:
            return [self.take(m) for m in messages]
        return script(messages)

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        known = [m for m in messages if m.id in self.taken]
        return ReconcileResult(known=bool(known), results=[
            SendResult(message_id=m.id, state=State.SENT, provider_message_id=f"P-{m.id}")
            for m in known])


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from open_store(request.param, tmp_path)


def queue(store: Store, count: int) -> List[Message]:
    messages = [Message.new(f"+55119876{n:05d}", f"Olá {n}", state=State.OUTGOING,
                            provider="fake", created_at=NOW - dt.timedelta(minutes=60 - n))
                for n in range(count)]
    return [o.message for o in store.add_messages(messages)]


def states(store: Store, messages: Sequence[Message]) -> List[State]:
    return [m.state for m in store.get_many([m.id for m in messages])]


def settle(store: Store, gateway: Gateway, at: dt.datetime = NOW) -> Tuple[Any, Any]:
    """Reconcile, then dispatch what is due: what the worker does each cycle."""
    reconciled = outbox.reconcile(store, gateway, now=at, stale_after=dt.timedelta(0))
    return reconciled, outbox.dispatch(store, gateway, now=at)


def test_a_message_without_a_result_is_reconciled_not_left_outgoing(store: Store) -> None:
    gateway = Gateway()
    messages = queue(store, 3)
    # The gateway took all three but answered for two only.
    gateway.scripts.append(lambda batch: [gateway.take(m) for m in batch][:2])
    report = outbox.dispatch(store, gateway, now=NOW)
    assert (report.sent, report.ambiguous) == (2, 1)
    assert states(store, messages) == [State.SENT, State.SENT, State.OUTGOING]
    (batch,) = store.batches(status="ambiguous")
    assert messages[2].id in batch.message_ids
    assert outbox.dispatch(store, gateway, now=NOW).batches == 0  # never sent blindly
    reconciled, _ = settle(store, gateway)
    assert (reconciled.confirmed, reconciled.resendable) == (1, 0)
    assert states(store, messages) == [State.SENT] * 3
    assert gateway.taken == {m.id: 1 for m in messages}


def test_a_message_without_a_result_the_gateway_never_took_is_sent_once(store: Store) -> None:
    gateway = Gateway()
    messages = queue(store, 3)
    gateway.scripts.append(lambda batch: [gateway.take(m) for m in batch[:2]])
    outbox.dispatch(store, gateway, now=NOW)
    reconciled, dispatched = settle(store, gateway)
    assert (reconciled.confirmed, reconciled.resendable, dispatched.sent) == (0, 1, 1)
    assert states(store, messages) == [State.SENT] * 3
    assert gateway.taken == {m.id: 1 for m in messages}


def stop_at(gateway: Gateway, index: int, cause: Exception, *, arrived: bool) -> Script:
    """A one-request-per-message gateway failing at ``batch[index]`` with ``cause`` (the
    request arrived when ``arrived``)."""
    def script(batch: Sequence[Message]) -> List[SendResult]:
        results = [gateway.take(m) for m in batch[:index]]
        if arrived:
            gateway.take(batch[index])
        rest = [m.id for m in batch[index + 1:]]
        raise PartialSendError(
            "stopped", results=results, ambiguous=[batch[index].id] if arrived else [],
            unsent=rest if arrived else [batch[index].id, *rest]) from cause
    return script


def test_a_batch_stopped_part_way_reconciles_only_the_ambiguous_message(store: Store) -> None:
    gateway = Gateway()
    messages = queue(store, 10)
    gateway.scripts.append(stop_at(gateway, 2, AmbiguousSendError("read timeout"),
                                   arrived=True))
    report = outbox.dispatch(store, gateway, now=NOW)
    assert (report.sent, report.released, report.ambiguous) == (2, 7, 1)
    (batch,) = store.batches(status="ambiguous")
    assert set(batch.message_ids) == {m.id for m in messages[:3]}
    unsent = store.get_many([m.id for m in messages[3:]])
    assert all(m.batch_id is None and m.attempts == 0 and m.state is State.OUTGOING
               for m in unsent)
    # The never-sent ones go at once; the ambiguous one waits for reconciliation.
    assert outbox.dispatch(store, gateway, now=NOW).sent == 7
    reconciled, dispatched = settle(store, gateway)
    assert (reconciled.confirmed, dispatched.batches) == (1, 0)
    assert states(store, messages) == [State.SENT] * 10
    assert gateway.taken == {m.id: 1 for m in messages}


def test_a_batch_stopped_by_a_rate_limit_puts_the_rest_back_at_retry_after(
        store: Store) -> None:
    gateway = Gateway()
    messages = queue(store, 5)
    gateway.scripts.append(stop_at(gateway, 1, RateLimitedError("slow down", retry_after=120),
                                   arrived=False))
    report = outbox.dispatch(store, gateway, now=NOW)
    later = NOW + dt.timedelta(seconds=120)
    assert (report.sent, report.released, report.ambiguous, report.retry_at) == (
        1, 4, 0, later)
    assert not store.batches(status="ambiguous")
    assert outbox.dispatch(store, gateway, now=NOW).batches == 0
    assert outbox.dispatch(store, gateway, now=later).sent == 4
    assert states(store, messages) == [State.SENT] * 5
    assert gateway.taken == {m.id: 1 for m in messages}


def test_a_store_that_cannot_requeue_reconciles_the_unsent_instead(tmp_path: Path) -> None:
    class PlainStore(MemoryStore):
        def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                             now: dt.datetime,
                             retry_at: Optional[dt.datetime] = None) -> List[str]:
            return Store.requeue_messages(self, batch_id, items, reason=reason, now=now,
                                          retry_at=retry_at)

    store = PlainStore()
    gateway = Gateway()
    messages = queue(store, 5)
    gateway.scripts.append(stop_at(gateway, 1, AmbiguousSendError("reset"), arrived=True))
    report = outbox.dispatch(store, gateway, now=NOW)
    assert (report.sent, report.released, report.ambiguous) == (1, 0, 4)
    reconciled, dispatched = settle(store, gateway)
    assert (reconciled.confirmed, reconciled.resendable, dispatched.sent) == (1, 3, 3)
    assert states(store, messages) == [State.SENT] * 5
    assert gateway.taken == {m.id: 1 for m in messages}


def test_an_opt_out_found_by_reconciliation_is_reported(store: Store) -> None:
    class Refusing(Gateway):
        def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
            return ReconcileResult(known=True, results=[SendResult(
                message_id=m.id, state=State.REJECTED, error_code="21610", opted_out=True)
                for m in messages])

    gateway = Refusing()
    (message,) = queue(store, 1)
    gateway.scripts.append(lambda batch: [])
    outbox.dispatch(store, gateway, now=NOW)
    heard: List[Tuple[str, Optional[str]]] = []
    outbox.reconcile(store, gateway, now=NOW,
                     on_opted_out=lambda m, r: heard.append((m.id, r.error_code)))
    assert heard == [(message.id, "21610")]
    assert not [e for e in store.history(message.id) if e.kind == KIND_REROUTED]


def test_reconciling_one_provider_leaves_another_providers_batches_alone(store: Store) -> None:
    class Other(Gateway):
        name = "other"

    gateway, other = Gateway(), Other()
    messages = queue(store, 2)
    gateway.scripts.append(lambda batch: [gateway.take(m) for m in batch][:0])
    outbox.dispatch(store, gateway, now=NOW)
    # "other" never saw the batch: were it asked, its "unknown" would send it again.
    report = outbox.reconcile(store, other, now=NOW)
    assert report.batches == 0 and len(store.batches(status="ambiguous")) == 1
    reconciled, dispatched = settle(store, gateway)
    assert (reconciled.confirmed, dispatched.batches) == (2, 0)
    assert gateway.taken == {m.id: 1 for m in messages} and not other.taken
