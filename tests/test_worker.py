"""The worker: reconcile before sending, schedules, dispatch, reply polling, and the loop
(errors, configuration errors, SIGTERM finishing the cycle in hand)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import attrs
import pytest

from smskit.config import Settings
from smskit.errors import AmbiguousSendError, ConfigurationError, ValidationError
from smskit.kit import SmsKit
from smskit.models import Direction, State
from smskit.outreach.scheduler import add_schedule, schedule_tag
from smskit.plugins import Plugins
from smskit.provider import Capabilities
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.worker import Worker, WorkerReport
from store_helpers import STORE_KINDS, open_store

UTC = dt.timezone.utc
PHONES = ["11987654321", "21998765432", "31987651234"]


class NoPolling(LoopbackProvider):
    """A gateway that only delivers replies by webhook."""

    capabilities = Capabilities(reconcile=True, webhooks=True, reply_polling=False)


def make_kit(provider: Optional[LoopbackProvider] = None, *, public_url: Optional[str] = None,
             clock: Optional[Callable[[], dt.datetime]] = None) -> SmsKit:
    settings = Settings(provider="loopback", database_url="memory://", public_url=public_url)
    extra: Any = {"clock": clock} if clock is not None else {}
    return SmsKit(settings, store=MemoryStore(), provider=provider or LoopbackProvider(),
                  plugins=Plugins(settings, entry_points=False), **extra)


def loopback(kit: SmsKit) -> LoopbackProvider:
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    return provider


def queue(kit: SmsKit, phones: List[str] = PHONES) -> List[str]:
    ids: List[str] = []
    kit.send_many(phones, "Seu pedido saiu para entrega.", dispatch=False,
                  on_outcome=lambda o: ids.append(str(o.message_id)))
    return ids


def states(kit: SmsKit, ids: List[str]) -> List[State]:
    return [m.state for m in kit.store.get_many(ids)]


# -- one cycle --------------------------------------------------------------------------------
def test_run_once_dispatches_due_messages() -> None:
    kit = make_kit()
    ids = queue(kit)
    report = Worker(kit, poll_replies=False).run_once()
    assert report.sent == 3 and not report.empty
    assert states(kit, ids) == [State.SENT] * 3
    assert set(loopback(kit).accepted_counts().values()) == {1}
    assert "loopback: 3 sent" in report.describe()

    again = Worker(kit, poll_replies=False).run_once()
    assert again.empty and again.describe() == "nothing to do"
    assert len(loopback(kit).sent) == 3


@pytest.fixture(params=STORE_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from open_store(request.param, tmp_path)


def test_a_started_worker_names_messages_no_provider_of_its_configuration_can_send(
        caplog: pytest.LogCaptureFixture, any_store: Store) -> None:
    # stored for a gateway since removed from the settings: they would wait for ever, silently
    settings = Settings(provider="loopback", database_url="memory://")
    kit = SmsKit(settings, store=any_store, provider=LoopbackProvider(),
                 plugins=Plugins(settings, entry_points=False))
    ids = queue(kit)
    gone = [attrs.evolve(m, id=f"{m.id}-x", provider="zenvia")
            for m in kit.store.get_many(ids)]
    kit.store.add_messages(gone[:2])
    stop = threading.Event()
    stop.set()  # started and stopped: only the start's check runs
    with caplog.at_level("WARNING", logger="smskit.worker"):
        Worker(kit, poll_replies=False).run(stop_event=stop)
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "2 outgoing message(s) wait for provider 'zenvia'" in warning
    assert "smskit cancel" in warning
    # the configured provider's own waiting messages are the worker's work, not a warning
    assert Worker(kit, poll_replies=False).warn_stranded() == {"zenvia": 2}
    Worker(kit, poll_replies=False).run_once()
    assert Worker(kit, poll_replies=False).warn_stranded() == {"zenvia": 2}
    for message in gone[:2]:
        kit.cancel(message.id, "gateway removed")
    assert Worker(kit, poll_replies=False).warn_stranded() == {}


def test_ambiguous_batch_is_reconciled_next_cycle_without_a_second_send() -> None:
    kit = make_kit()
    provider = loopback(kit)
    ids = queue(kit)
    provider.fail_next(AmbiguousSendError("read timeout"), after_accept=True)
    worker = Worker(kit, poll_replies=False)

    first = worker.run_once()
    assert first.dispatched["loopback"].ambiguous == 3
    assert states(kit, ids) == [State.OUTGOING] * 3  # unknown: neither sent nor resent

    second = worker.run_once()
    assert second.reconciled["loopback"].confirmed == 3
    assert second.dispatched["loopback"].batches == 0
    assert states(kit, ids) == [State.SENT] * 3
    assert set(provider.accepted_counts().values()) == {1}
    assert len(provider.calls) == 1


def test_a_request_that_never_arrived_is_sent_again_exactly_once() -> None:
    kit = make_kit()
    provider = loopback(kit)
    kit.send("+5541987654321", "Primeira")  # an accepted request: proves the lookup
    ids = queue(kit)
    provider.fail_next(AmbiguousSendError("connection reset"), after_accept=False)
    worker = Worker(kit, poll_replies=False)

    assert worker.run_once().dispatched["loopback"].ambiguous == 3
    assert len(provider.sent) == 1

    second = worker.run_once()
    assert second.reconciled["loopback"].resendable == 3
    assert second.sent == 3
    assert states(kit, ids) == [State.SENT] * 3
    assert sorted(provider.accepted_counts().values()) == [1, 1, 1, 1]
    assert len(provider.calls) == 3

    worker.run_once()
    assert len(provider.calls) == 3


def test_stale_claimed_batch_of_a_dead_worker_is_reconciled_first() -> None:
    now = [dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)]
    kit = make_kit(clock=lambda: now[0])
    provider = loopback(kit)
    ids = queue(kit)
    # A worker claimed the batch, the gateway accepted it, and the worker died before recording.
    batch = kit.store.claim_batch("loopback", 100, now[0], "dead-worker-batch")
    assert batch is not None
    provider.send_batch(kit.store.get_many(list(batch.message_ids)), batch_id=batch.id)

    worker = Worker(kit, poll_replies=False, stale_after=dt.timedelta(minutes=5))
    assert worker.run_once().empty  # not stale yet: left alone, nothing sent twice
    now[0] += dt.timedelta(minutes=6)
    report = worker.run_once()
    assert report.reconciled["loopback"].confirmed == 3
    assert states(kit, ids) == [State.SENT] * 3
    assert set(provider.accepted_counts().values()) == {1}


def test_due_schedules_are_materialised_and_sent_in_the_same_cycle() -> None:
    now = [dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC)]
    kit = make_kit(clock=lambda: now[0])
    schedule = add_schedule(kit, "bom-dia", {"text": "Bom dia!", "recipients": PHONES},
                            rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    worker = Worker(kit, poll_replies=False)
    assert worker.run_once().empty

    now[0] = dt.datetime(2024, 3, 1, 12, 0, 3, tzinfo=UTC)
    report = worker.run_once()
    [run] = report.schedules
    assert run.won and run.created == 3
    assert report.sent == 3
    assert "schedule bom-dia 2024-03-01T12:00:00+00:00 ran (3 new, 0 skipped)" in report.describe()
    sent = [m for m in kit.store.list_messages() if schedule_tag(schedule.id) in m.tags]
    assert [m.state for m in sent] == [State.SENT] * 3
    assert worker.run_once().empty


# -- replies ------------------------------------------------------------------------------------
def test_replies_are_polled_when_webhooks_cannot_reach_us() -> None:
    kit = make_kit()
    provider = loopback(kit)
    provider.add_reply("+5511987654321", "Obrigado!")
    worker = Worker(kit)
    report = worker.run_once()
    assert report.replies == {"loopback": 1}
    inbound = [m for m in kit.store.list_messages() if m.direction is Direction.INBOUND]
    assert [(m.phone, m.body) for m in inbound] == [("+5511987654321", "Obrigado!")]

    provider.add_reply("+5521998765432", "SAIR")
    second = worker.run_once()
    assert second.replies == {"loopback": 1}  # the first reply is not recorded twice
    assert kit.store.is_blacklisted("+5521998765432")
    assert len([m for m in kit.store.list_messages() if m.direction is Direction.INBOUND]) == 2


def test_with_webhooks_replies_are_still_polled_every_reply_poll_every() -> None:
    now = [dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)]
    kit = make_kit(public_url="https://sms.example.com.br", clock=lambda: now[0])
    provider = loopback(kit)
    provider.add_reply("+5511987654321", "Oi")
    worker = Worker(kit)
    assert worker.run_once().replies == {"loopback": 1}  # a safety net: webhooks get lost
    provider.add_reply("+5511987654322", "Oi de novo")
    now[0] += dt.timedelta(seconds=60)
    assert worker.run_once().replies == {}  # not before reply_poll_every (300 s)
    now[0] += dt.timedelta(seconds=241)
    assert worker.run_once().replies == {"loopback": 1}
    inbound = [m for m in kit.store.list_messages() if m.direction is Direction.INBOUND]
    assert len(inbound) == 2


def test_reply_poll_every_zero_turns_reply_polling_off() -> None:
    settings = Settings(provider="loopback", database_url="memory://",
                        values={"reply_poll_every": "0"})
    kit = SmsKit(settings, store=MemoryStore(), provider=LoopbackProvider(),
                 plugins=Plugins(settings, entry_points=False))
    loopback(kit).add_reply("+5511987654321", "Oi")
    assert Worker(kit).run_once().replies == {}
    assert kit.store.list_messages() == []


def test_polling_can_be_switched_off_and_forced() -> None:
    kit = make_kit()
    loopback(kit).add_reply("+5511987654321", "Oi")
    assert Worker(kit, poll_replies=False).run_once().replies == {}
    forced = make_kit(public_url="https://sms.example.com.br")
    loopback(forced).add_reply("+5511987654321", "Oi")
    assert Worker(forced, poll_replies=True).run_once().replies == {"loopback": 1}


def test_forcing_polling_on_a_provider_that_cannot_is_a_configuration_error() -> None:
    kit = make_kit(NoPolling())
    ids = queue(kit)
    assert Worker(kit).run_once().replies == {}  # auto: the provider cannot poll
    with pytest.raises(ConfigurationError, match="cannot poll for replies"):
        Worker(kit, poll_replies=True).run_once()
    assert states(kit, ids) == [State.SENT] * 3


def test_bad_worker_arguments() -> None:
    kit = make_kit()
    with pytest.raises(ValidationError, match="interval must be positive"):
        Worker(kit, interval=0)
    with pytest.raises(ValidationError, match="catch_up must be one of"):
        Worker(kit, catch_up="never")


# -- the loop -----------------------------------------------------------------------------------
def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_loop_survives_a_failing_cycle_and_stops_on_its_event(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kit = make_kit()
    ids = queue(kit)
    worker = Worker(kit, interval=0.01, poll_replies=False)
    real = kit.reconcile
    calls: List[int] = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(kit, "reconcile", flaky)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    with caplog.at_level("INFO", logger="smskit.worker"):
        thread.start()
        wait_for(lambda: states(kit, ids) == [State.SENT] * 3, "the messages to be sent")
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "worker cycle failed" in caplog.text and "database went away" in caplog.text
    assert "worker cycle: loopback: 3 sent" in caplog.text
    assert "worker stopped" in caplog.text
    assert set(loopback(kit).accepted_counts().values()) == {1}


def test_loop_ends_on_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    kit = make_kit()
    worker = Worker(kit, interval=0.01)

    def broken(now: Optional[dt.datetime] = None) -> WorkerReport:
        raise ConfigurationError("unknown provider 'kolmeya2'")

    monkeypatch.setattr(worker, "run_once", broken)
    with pytest.raises(ConfigurationError, match="kolmeya2"):
        worker.run(threading.Event())


RUNNER = textwrap.dedent(
    """
    import logging, pathlib, sys, time
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.plugins import Plugins
    from smskit.store.sql import SqlStore
    from smskit.providers.loopback import LoopbackProvider
    from smskit.worker import Worker

    db, markers = sys.argv[1], pathlib.Path(sys.argv[2])

    class SlowGateway(LoopbackProvider):
        def send_batch(self, messages, *, batch_id):
            (markers / "sending").touch()
            deadline = time.monotonic() + 60
            while not (markers / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return super().send_batch(messages, batch_id=batch_id)

    logging.basicConfig(filename=str(markers / "worker.log"), level=logging.INFO,
                        format="%(name)s %(levelname)s %(message)s")
    settings = Settings(provider="loopback")
    kit = SmsKit(settings, store=SqlStore("sqlite:///" + db), provider=SlowGateway(),
                 plugins=Plugins(settings, entry_points=False))
    Worker(kit, interval=0.05, poll_replies=False).run()
    (markers / "returned").touch()
    kit.close()
    """
)


def start_worker(tmp_path: Path) -> Tuple[subprocess.Popen[str], Path, Any, List[str]]:
    from smskit.store.sql import SqlStore

    db = tmp_path / "worker.db"
    markers = tmp_path / "markers"
    markers.mkdir()
    store = SqlStore(f"sqlite:///{db}")
    settings = Settings(provider="loopback")
    kit = SmsKit(settings, store=store, provider=LoopbackProvider(),
                 plugins=Plugins(settings, entry_points=False))
    ids = queue(kit)
    script = tmp_path / "run_worker.py"
    script.write_text(RUNNER, encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(script), str(db), str(markers)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, markers, store, ids


def log_text(markers: Path) -> str:
    path = markers / "worker.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_finishes_the_cycle_in_hand_then_exits_zero(tmp_path: Path) -> None:
    process, markers, store, ids = start_worker(tmp_path)
    try:
        wait_for(lambda: (markers / "sending").exists(), "the worker to start sending")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log_text(markers), "the signal to be handled")
        (markers / "go").touch()  # the gateway answers; the batch in hand completes
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert (markers / "returned").exists()
    text = log_text(markers)
    assert "stopping after the current cycle" in text and "worker stopped" in text
    assert [m.state for m in store.get_many(ids)] == [State.SENT] * 3
    store.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    process, markers, store, ids = start_worker(tmp_path)
    try:
        wait_for(lambda: (markers / "sending").exists(), "the worker to start sending")
        process.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log_text(markers), "the first signal")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert not (markers / "returned").exists()
    assert "exiting now" in log_text(markers)
    # Nothing was sent; the claimed batch waits for reconciliation by the next worker.
    assert [m.state for m in store.get_many(ids)] == [State.OUTGOING] * 3
    assert [b.id for b in store.batches(status="claimed")]
    store.close()
