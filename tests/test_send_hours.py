"""The hours are checked again when a batch is claimed for sending, not only when its messages
were composed: quiet hours and do-not-disturb hold whatever reaches the gateway later than
planned (a campaign resumed at night, a batch retried after an outage, a rule set since).
On the memory store, SQLite and (with ``SMSKIT_TEST_POSTGRES_URL``) PostgreSQL; end to end
against the Kolmeya simulator on loopback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import pytest

from smskit.config import Settings
from smskit.errors import TransientProviderError, ValidationError
from smskit.kit import SmsKit
from smskit.models import Message, SendResult, State
from smskit.outreach.campaigns import Campaigns
from smskit.outreach.contacts import make_contact
from smskit.outreach.scheduler import add_schedule
from smskit.plugins import Plugins
from smskit.provider import Provider
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import Requeue, Store
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit.timeutil import zone
from smskit.worker import Worker
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator
from store_helpers import STORE_KINDS, open_store

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")


def sp(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A moment of March 2027 in São Paulo, in UTC."""
    return dt.datetime(2027, 3, day, hour, minute, tzinfo=SP).astimezone(UTC)


def phone(i: int) -> str:
    return f"+55119{10_000_000 + i:08d}"


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from open_store(request.param, tmp_path)


def make_kit(store: Store, clock: Clock, provider: Optional[Provider] = None,
             **values: str) -> SmsKit:
    settings = Settings.load(environ={}, provider="loopback", database_url="memory://",
                             **{"quiet_hours": "21:00-08:00", **values})
    return SmsKit(settings, store=store, provider=provider or LoopbackProvider(max_batch=100),
                  plugins=Plugins(settings, entry_points=False), clock=clock)


def outgoing(store: Store) -> List[Message]:
    return store.list_messages(state=State.OUTGOING, limit=1000)


def test_a_campaign_resumed_at_night_waits_for_the_morning(store: Store) -> None:
    clock = Clock(sp(1, 14))
    gateway = LoopbackProvider(max_batch=100)
    kit = make_kit(store, clock, gateway)
    outreach: Any = store
    outreach.save_contacts([make_contact(phone(i), name=f"C{i}", tags=["vip"])
                            for i in range(5)])
    campaigns = Campaigns(kit)
    created = campaigns.create("promo", "Oi {{ name }}", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    campaigns.advance()  # stored at 14:00, due at once
    campaigns.pause(created.id)

    clock.now = sp(1, 23)
    campaigns.resume(created.id)
    night = Worker(kit, poll_replies=False, campaigns=campaigns).run_once()

    assert night.sent == 0 and gateway.sent == []
    waiting = outgoing(store)
    assert len(waiting) == 5
    assert {m.scheduled_at for m in waiting} == {sp(2, 8)}
    assert {m.attempts for m in waiting} == {0}  # waiting is not a failed attempt
    assert {m.batch_id for m in waiting} == {None}
    assert night.dispatched["loopback"].deferred == 5
    assert "5 deferred" in night.describe()

    clock.now = sp(2, 7, 59)
    assert Worker(kit, poll_replies=False, campaigns=campaigns).run_once().sent == 0
    clock.now = sp(2, 8)
    morning = Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
    assert morning.sent == 5
    assert sorted(gateway.accepted_counts().values()) == [1] * 5  # each once
    assert outgoing(store) == []


class _DownUntil(LoopbackProvider):
    """A gateway that refuses connections until a moment of the test's clock."""

    def __init__(self, clock: Clock, until: dt.datetime) -> None:
        super().__init__(max_batch=100)
        self.clock, self.until, self.refused = clock, until, 0

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        if self.clock.now < self.until:
            self.refused += 1
            raise TransientProviderError("connection refused")
        return super().send_batch(messages, batch_id=batch_id)


def test_a_batch_retried_after_an_outage_does_not_go_out_in_the_quiet_hours(
        store: Store) -> None:
    clock = Clock(sp(1, 12))
    gateway = _DownUntil(clock, sp(1, 21, 30))
    kit = make_kit(store, clock, gateway)
    add_schedule(kit, "lembrete", {"recipients": [phone(1), phone(2)], "text": "Lembrete"},
                 rrule="FREQ=DAILY;BYHOUR=20;BYMINUTE=50")
    worker = Worker(kit, poll_replies=False)
    moment = sp(1, 20, 50)
    while moment < sp(1, 21, 40):  # the gateway refuses every request until 21:30
        clock.now = moment
        assert worker.run_once(moment).sent == 0
        moment += dt.timedelta(minutes=5)
    assert gateway.refused >= 1 and gateway.sent == []
    assert {m.scheduled_at for m in outgoing(store)} == {sp(2, 8)}

    clock.now = sp(2, 8, 5)
    assert worker.run_once(clock.now).sent == 2
    assert sorted(gateway.accepted_counts().values()) == [1, 1]


def test_do_not_disturb_set_after_queueing_holds_only_that_recipient(store: Store) -> None:
    clock = Clock(sp(1, 10))
    gateway = LoopbackProvider(max_batch=100)
    kit = make_kit(store, clock, gateway)
    summary = kit.send_many([phone(1), phone(2), phone(3)], "Oi", at=sp(1, 14),
                            dispatch=False)
    assert summary.queued == 3
    outreach: Any = store
    # phone(3) asks for no messages in the day, when the shop's quiet hours allow them
    outreach.save_contacts([make_contact(phone(2), dnd_window="13:00-15:00"),
                            make_contact(phone(3), dnd_window="08:00-21:00")])
    clock.now = sp(1, 14)
    report = kit.dispatch()

    assert report.sent == 1 and report.deferred == 1 and report.canceled == 1
    assert [m.phone for m in gateway.sent] == [phone(1)]
    (held,) = outgoing(store)
    assert held.phone == phone(2) and held.scheduled_at == sp(1, 15) and held.attempts == 0
    (never,) = store.list_messages(state=State.CANCELED)
    assert never.phone == phone(3) and never.error_code == "dnd"
    assert never.error_text == "do-not-disturb leaves no time to send"

    clock.now = sp(1, 15)
    assert kit.dispatch().sent == 1
    assert [m.phone for m in gateway.sent] == [phone(1), phone(2)]


def test_a_backlog_still_draining_when_the_quiet_hours_begin_stops_there(
        store: Store) -> None:
    clock = Clock(sp(1, 20, 59))
    gateway = LoopbackProvider(max_batch=10)
    kit = make_kit(store, clock, gateway)
    kit.send_many([phone(i) for i in range(30)], "Oi", dispatch=False)
    first = kit.dispatch(max_batches=1)  # 20:59: one batch goes
    assert first.sent == 10
    clock.now = sp(1, 21)
    rest = kit.dispatch()
    assert rest.sent == 0 and rest.deferred == 20
    assert len(gateway.sent) == 10
    assert {m.scheduled_at for m in outgoing(store)} == {sp(2, 8)}


def test_a_provider_whose_quiet_hours_are_off_sends_at_night(store: Store) -> None:
    clock = Clock(sp(1, 14))
    gateway = LoopbackProvider(max_batch=100)
    kit = make_kit(store, clock, gateway, loopback_quiet_hours="off")
    kit.send_many([phone(1)], "Código 1234", at=sp(1, 23), dispatch=False)
    clock.now = sp(1, 23)
    assert kit.dispatch().sent == 1


class _NoRequeue(MemoryStore):
    """A store written before ``requeue_messages`` existed (the base class's: takes none)."""

    def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                         now: dt.datetime,
                         retry_at: Optional[dt.datetime] = None) -> List[str]:
        return []


def test_a_store_that_cannot_take_messages_out_of_a_batch_puts_it_back_whole() -> None:
    store = _NoRequeue()
    clock = Clock(sp(1, 14))
    gateway = LoopbackProvider(max_batch=100)
    kit = make_kit(store, clock, gateway)
    kit.send_many([phone(1), phone(2)], "Oi", dispatch=False)  # due at 14:00, not sent
    clock.now = sp(1, 23)
    assert kit.dispatch().sent == 0 and gateway.sent == []
    assert {m.attempts for m in outgoing(store)} == {1}  # released with the batch
    assert {m.scheduled_at for m in outgoing(store)} == {sp(2, 8)}
    clock.now = sp(2, 8)
    assert kit.dispatch().sent == 2


SimServer = Tuple[KolmeyaSimulator, str]


def test_nothing_reaches_kolmeya_in_the_quiet_hours(kolmeya_sim: SimServer,
                                                    tmp_path: Path) -> None:
    simulator, base = kolmeya_sim
    clock = Clock(sp(1, 14))
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token, quiet_hours="21:00-08:00")
    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    kit = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings),
                 plugins=Plugins(settings, entry_points=False), clock=clock)
    try:
        store.save_contacts([make_contact(phone(i), name="Cliente", tags=["vip"])
                             for i in range(3)])
        campaigns = Campaigns(kit)
        created = campaigns.create("vip", "Olá {{ name }}", {"type": "tags", "tags": ["vip"]})
        campaigns.start(created.id)
        campaigns.advance()
        campaigns.pause(created.id)
        clock.now = sp(1, 22)
        campaigns.resume(created.id)
        Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
        assert simulator.requests == {}

        clock.now = sp(2, 8)
        assert Worker(kit, poll_replies=False, campaigns=campaigns).run_once().sent == 3
        assert sorted(simulator.accepted_references().values()) == [1, 1, 1]
    finally:
        kit.close()


def test_a_recipient_whose_rule_leaves_no_time_is_canceled_not_the_whole_send(
        store: Store) -> None:
    clock = Clock(sp(1, 10))
    gateway = LoopbackProvider(max_batch=100)
    kit = make_kit(store, clock, gateway)
    outreach: Any = store
    outreach.save_contacts([make_contact(phone(2), dnd_window="08:00-21:00")])
    summary = kit.send_many([phone(1), phone(2)], "Oi")
    assert (summary.sent, summary.canceled) == (1, 1)
    (never,) = store.list_messages(state=State.CANCELED)
    assert never.phone == phone(2) and never.error_code == "dnd"
    assert never.error_text == f"do-not-disturb of {phone(2)} leaves no time to send"


def test_a_rule_on_every_day_is_refused_when_the_contact_is_made() -> None:
    with pytest.raises(ValidationError) as raised:
        make_contact(phone(1), dnd_days=["seg", "ter", "qua", "qui", "sex", "sab", "dom"])
    assert str(raised.value) == ("do-not-disturb on every day of the week leaves no time to "
                                 "send: put the number on the blacklist instead")
