"""Routing and failover on two loopback gateways: the route table and the ``route_outbound``
hook choose the provider when a message is composed; a provider failing with "sent nothing"
errors opens its circuit and its queued messages move to the next provider of their routes
(each move in the history); an ambiguous batch never moves; per-provider prices, quiet hours,
rate limits and balance thresholds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

from smskit import hookimpl
from smskit.config import Settings
from smskit.errors import AmbiguousSendError, ConfigurationError, TransientProviderError
from smskit.kit import SmsKit
from smskit.models import Message, SendResult, State
from smskit.outreach.balance import BalanceMonitor
from smskit.plugins import Plugins
from smskit.provider import ReconcileResult
from smskit.providers.loopback import LoopbackProvider
from smskit.routing import PriceTable, RateLimiter, RouteTable, read_circuits
from smskit.store.base import KIND_REROUTED
from smskit.store.memory import MemoryStore
from smskit.worker import Worker

NOON = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.timezone.utc)  # 12:00 in São Paulo
BR, BR2, US = "+5511987654321", "+5521998765432", "+12025550143"


class Clock:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Gateway(LoopbackProvider):
    """A loopback gateway that can be taken down (every request refused: nothing sent)."""

    down = False

    def send_batch(self, messages: Sequence[Message], *, batch_id: str) -> List[SendResult]:
        if self.down:
            self.calls.append((batch_id, len(messages)))
            raise TransientProviderError(f"{self.name}: connection refused")
        return super().send_batch(messages, batch_id=batch_id)

    def reconcile(self, batch_id: str, messages: Sequence[Message]) -> ReconcileResult:
        if self.down:
            raise TransientProviderError(f"{self.name}: connection refused")
        return super().reconcile(batch_id, messages)


class Gateways:
    """A plugin registering the test gateways."""

    def __init__(self, *gateways: Gateway) -> None:
        self.gateways = {g.name: g for g in gateways}

    @hookimpl
    def register_providers(self, register: Callable[..., None]) -> None:
        for name, gateway in self.gateways.items():
            register(name, lambda settings, g=gateway: g)


class RouteHook:
    """A plugin implementing route_outbound with ``route``."""

    def __init__(self, route: Callable[[Message], Any]) -> None:
        self.route = route

    @hookimpl
    def route_outbound(self, message: Message) -> Any:
        return self.route(message)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kolmeya() -> Gateway:
    return Gateway("kolmeya", max_batch=5)


@pytest.fixture
def twilio() -> Gateway:
    return Gateway("twilio", max_batch=5)


def make_kit(clock: Clock, *gateways: Gateway, route: Optional[Callable[[Message], Any]] = None,
             **values: str) -> SmsKit:
    settings = Settings.load(environ={}, provider="kolmeya", **values)
    plugins = Plugins(settings, entry_points=False)
    plugins.register(Gateways(*gateways), name="test-gateways")
    if route is not None:
        plugins.register(RouteHook(route), name="test-route")
    return SmsKit(settings, store=MemoryStore(), plugins=plugins, clock=clock)


FAILOVER = {"routes": "+1 => twilio; * => kolmeya, twilio", "circuit_cooldown": "60"}


@pytest.fixture
def kit(clock: Clock, kolmeya: Gateway, twilio: Gateway) -> Iterator[SmsKit]:
    made = make_kit(clock, kolmeya, twilio, **FAILOVER)
    yield made
    made.close()


def phones(count: int) -> List[str]:
    return [f"+55119{80000000 + i:08d}" for i in range(count)]


def by_provider(kit: SmsKit) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for message in kit.store.list_messages(limit=1000):
        counts[message.provider or ""] = counts.get(message.provider or "", 0) + 1
    return counts


# -- the tables ---------------------------------------------------------------------------------

def test_route_table_rules_are_tried_in_order() -> None:
    table = RouteTable.parse("tag:otp => twilio, kolmeya; campaign:promo-* +55 => kolmeya\n"
                             "+1 => twilio; PT => twilio; * => kolmeya, twilio by cost")
    def route(phone: str, **fields: Any) -> Any:
        rule = table.match(Message.new(phone, "x", **fields))
        return rule.providers if rule is not None else None
    assert route(BR, tags=("otp",)) == ("twilio", "kolmeya")
    assert route(BR, campaign_id="promo-nov") == ("kolmeya",)
    assert route(US, campaign_id="promo-nov") == ("twilio",)
    assert route("+351912345678") == ("twilio",)
    assert route(BR) == ("kolmeya", "twilio")
    assert table.rules[-1].by_cost and table.providers() == ("twilio", "kolmeya")
    assert RouteTable.parse(None).rules == ()


@pytest.mark.parametrize("text", ["+55 kolmeya", "=> twilio", "+55 => ", "xx:1 => twilio",
                                  "+55 => Twilio!", "brazil => kolmeya"])
def test_a_malformed_route_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="routes"):
        RouteTable.parse(text)


def test_price_table_longest_prefix_then_region_then_default() -> None:
    table = PriceTable.parse("+1=0.0079, +55=0.06; +5511=0.05, PT=0.07, *=0.09")
    assert table.price("+5511987654321") == Decimal("0.05")
    assert table.price("+5521998765432") == Decimal("0.06")
    assert table.price("+351912345678") == Decimal("0.07")
    assert table.price("+447911123456") == Decimal("0.09")
    assert PriceTable.parse("+1=0.0079").price(BR) is None
    for bad in ("+55", "+55=abc", "+55=-1", "brazil=0.1"):
        with pytest.raises(ConfigurationError, match="twilio_prices"):
            PriceTable.parse(bad, "twilio_prices")


# -- choosing the provider ------------------------------------------------------------------------

def test_the_route_chooses_the_provider_and_its_price(clock: Clock, kolmeya: Gateway,
                                                      twilio: Gateway) -> None:
    with make_kit(clock, kolmeya, twilio, routes="+1 => twilio; * => kolmeya",
                  twilio_prices="+1=0.0079, *=0.09", kolmeya_prices="+55=0.06") as kit:
        us = kit.get(kit.send(US, "Hello").message_id)
        br = kit.get(kit.send(BR, "Olá").message_id)
        assert us is not None and br is not None
        assert (us.provider, us.cost, us.state) == ("twilio", Decimal("0.0079"), State.SENT)
        assert (br.provider, br.cost, br.state) == ("kolmeya", Decimal("0.06"), State.SENT)
        # An explicit provider is not routed.
        forced = kit.get(kit.send(US, "Hello", provider="kolmeya").message_id)
        assert forced is not None and forced.provider == "kolmeya"
    assert [r.phone for r in twilio.sent] == [US]


def test_by_cost_picks_the_cheapest_for_the_destination(clock: Clock, kolmeya: Gateway,
                                                        twilio: Gateway) -> None:
    with make_kit(clock, kolmeya, twilio, routes="* => kolmeya, twilio by cost",
                  kolmeya_prices="+55=0.06, *=0.20", twilio_prices="+1=0.0079, *=0.09") as kit:
        kit.send(BR, "Olá")
        kit.send(US, "Hello")
        assert by_provider(kit) == {"kolmeya": 1, "twilio": 1}


def test_the_route_outbound_hook_wins_over_the_table(clock: Clock, kolmeya: Gateway,
                                                     twilio: Gateway) -> None:
    def route(message: Message) -> Any:
        return "twilio" if "otp" in message.tags else None
    with make_kit(clock, kolmeya, twilio, route=route, routes="* => kolmeya",
                  route_providers="twilio") as kit:
        kit.send(BR, "Código 1234", tags=["otp"])
        kit.send(BR2, "Olá")
        assert by_provider(kit) == {"twilio": 1, "kolmeya": 1}
        assert kit.routed_providers() == ("kolmeya", "twilio")  # the worker serves both


def test_without_routes_everything_goes_to_the_default(clock: Clock, kolmeya: Gateway,
                                                       twilio: Gateway) -> None:
    with make_kit(clock, kolmeya, twilio) as kit:
        assert not kit.router.active and kit.routed_providers() == ("kolmeya",)
        kolmeya.down = True
        kit.send_many(phones(3), "Olá")
        kit.dispatch(provider="kolmeya")
        kit.dispatch(provider="kolmeya")
        assert by_provider(kit) == {"kolmeya": 3}  # nothing fails over
        assert not twilio.sent


# -- failover -----------------------------------------------------------------------------------

def test_a_provider_down_moves_its_queue_to_the_next_in_the_route(
        kit: SmsKit, clock: Clock, kolmeya: Gateway, twilio: Gateway) -> None:
    kit.send_many(phones(12), "Olá", dispatch=False)
    kolmeya.down = True
    report = Worker(kit).run_once()
    assert report.dispatched["kolmeya"].moved == {"twilio": 12}
    assert report.dispatched["twilio"].sent == 12
    assert len(kolmeya.calls) == 1  # one refused request opened the circuit
    assert by_provider(kit) == {"twilio": 12}
    message = kit.store.list_messages(limit=1)[0]
    moves = [e for e in kit.history(message.id) if e.kind == KIND_REROUTED]
    assert [(e.provider, e.detail.split(":")[0]) for e in moves] == [
        ("twilio", "from kolmeya to twilio")]
    assert twilio.accepted_counts() and max(twilio.accepted_counts().values()) == 1
    assert kit.store.reroute_counts() == {("kolmeya", "twilio"): 12}  # type: ignore[attr-defined]


def test_while_the_circuit_is_open_new_messages_go_to_the_secondary(
        kit: SmsKit, clock: Clock, kolmeya: Gateway, twilio: Gateway) -> None:
    kolmeya.down = True
    first = kit.send(BR, "Olá")  # tried on kolmeya, moved, sent by twilio
    assert first.state is State.SENT
    kit.send(BR2, "Olá de novo")
    assert len(kolmeya.calls) == 1
    assert by_provider(kit) == {"twilio": 2}
    # After the cool-down the circuit is half-open: the primary gets the next message.
    kolmeya.down = False
    clock.advance(61)
    later = kit.get(kit.send(BR, "Tudo certo?").message_id)
    assert later is not None and (later.provider, later.state) == ("kolmeya", State.SENT)
    assert kit.router.circuits.state("kolmeya").until is None  # closed again


def test_a_half_open_circuit_that_fails_opens_again(kit: SmsKit, clock: Clock,
                                                    kolmeya: Gateway) -> None:
    kolmeya.down = True
    kit.send(BR, "Olá")
    clock.advance(61)
    kit.send(BR2, "Olá")
    state = kit.router.circuits.state("kolmeya")
    assert state.trips == 2 and state.until == clock.now + dt.timedelta(seconds=60)
    assert len(kolmeya.calls) == 2


def test_an_ambiguous_batch_never_moves(kit: SmsKit, clock: Clock, kolmeya: Gateway,
                                        twilio: Gateway) -> None:
    kit.send_many(phones(5), "Olá", dispatch=False)
    kolmeya.fail_next(AmbiguousSendError("read timeout"), after_accept=True)
    kit.dispatch(provider="kolmeya")
    (batch,) = kit.store.batches(status="ambiguous")
    kit.send("+5511970000001", "Outra", dispatch=False)
    kolmeya.down = True
    report = Worker(kit).run_once()  # the new one moves; the ambiguous five stay with kolmeya
    assert report.reconciled["kolmeya"].still_unknown == 5
    assert by_provider(kit) == {"kolmeya": 5, "twilio": 1}
    assert all(m.state is State.OUTGOING for m in kit.store.get_many(batch.message_ids))
    kolmeya.down = False
    clock.advance(61)
    report = Worker(kit).run_once()
    assert report.reconciled["kolmeya"].confirmed == 5
    assert max(kolmeya.accepted_counts().values()) == 1 and not any(
        r.message_id in batch.message_ids for r in twilio.sent)


def test_a_message_whose_route_has_no_other_provider_waits(kit: SmsKit, clock: Clock,
                                                           kolmeya: Gateway) -> None:
    # Sent with an explicit provider its route does not name: it stays with that provider.
    kit.send(US, "Hello", provider="kolmeya", dispatch=False)
    kolmeya.down = True
    report = kit.dispatch(provider="kolmeya")
    assert report.moved == {} and report.released == 1
    message = kit.store.list_messages(limit=1)[0]
    assert message.provider == "kolmeya" and message.scheduled_at == clock.now + \
        dt.timedelta(seconds=60)


def test_the_circuit_is_shared_through_the_store(kit: SmsKit, clock: Clock,
                                                 kolmeya: Gateway, twilio: Gateway) -> None:
    kolmeya.down = True
    kit.send(BR, "Olá")
    stored = read_circuits(kit.store)
    assert stored["kolmeya"].is_open(clock.now) and stored["kolmeya"].trips == 1
    # Another process on the same store routes around kolmeya without trying it.
    other = SmsKit(kit.settings, store=kit.store, plugins=kit.plugins, clock=clock)
    other.send(BR2, "Olá")
    assert len(kolmeya.calls) == 1 and by_provider(kit) == {"twilio": 2}


# -- per provider -------------------------------------------------------------------------------

def test_quiet_hours_exception_per_provider(clock: Clock, kolmeya: Gateway,
                                            twilio: Gateway) -> None:
    clock.now = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.timezone.utc)  # 22:00 in São Paulo
    with make_kit(clock, kolmeya, twilio, routes="tag:otp => twilio; * => kolmeya",
                  quiet_hours="21:00-08:00", twilio_quiet_hours="off") as kit:
        otp = kit.send(BR, "Código 1234", tags=["otp"])
        promo = kit.send(BR2, "Promoção")
    assert otp.state is State.SENT and otp.deferred_until is None
    assert promo.state is State.OUTGOING and promo.deferred_until is not None


def test_a_provider_sends_at_any_time_only_with_its_hours_days_and_holidays_off(
        clock: Clock, kolmeya: Gateway, twilio: Gateway) -> None:
    clock.now = dt.datetime(2026, 12, 25, 13, 0, tzinfo=dt.timezone.utc)  # a holiday, 10:00
    quiet = {"routes": "tag:otp => twilio; * => kolmeya", "quiet_hours": "21:00-08:00",
             "quiet_days": "sun", "holidays": "2026-12-25",
             "twilio_quiet_hours": "off", "twilio_quiet_days": "off"}
    with make_kit(clock, kolmeya, twilio, **quiet, twilio_holidays="off") as kit:
        otp = kit.send(BR, "Código 1234", tags=["otp"])
        promo = kit.send(BR2, "Promoção")
    assert otp.state is State.SENT and otp.deferred_until is None
    assert promo.state is State.OUTGOING and promo.deferred_until is not None
    # Each key is explicit: with the hours and days off, the holidays stay the installation's.
    with make_kit(clock, kolmeya, twilio, **quiet) as kit:
        assert kit.send(BR, "Código 1234", tags=["otp"]).deferred_until is not None


def test_a_provider_may_have_its_own_holidays(clock: Clock, kolmeya: Gateway) -> None:
    with make_kit(clock, kolmeya, holidays="2026-12-25",
                  kolmeya_holidays="2026-12-24, 2026-12-31") as kit:
        quiet = kit.policies.quiet_hours("kolmeya")
    assert quiet.holidays == {dt.date(2026, 12, 24), dt.date(2026, 12, 31)}
    with make_kit(clock, kolmeya, kolmeya_holidays="24/12") as kit, \
            pytest.raises(ConfigurationError, match="kolmeya_holidays: expected YYYY-MM-DD"):
        kit.policies.quiet_hours("kolmeya")


def test_rate_limiter_spaces_batches_out() -> None:
    now = [100.0]
    waits: List[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds
    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    assert limiter.per_batch == 10
    for _ in range(3):
        limiter.acquire(10)
    assert waits == [1.0, 1.0]  # the first batch goes at once
    now[0] += 5
    assert limiter.acquire(5) == 0.0


def test_max_per_second_limits_the_batch_and_paces(clock: Clock, kolmeya: Gateway,
                                                   twilio: Gateway) -> None:
    with make_kit(clock, kolmeya, twilio, kolmeya_max_per_second="2") as kit:
        kit.router.limiter("kolmeya")._sleep = lambda s: None  # type: ignore[union-attr]
        kit.send_many(phones(5), "Olá", dispatch=False)
        report = kit.dispatch(provider="kolmeya")
    assert report.sent == 5 and [n for _, n in kolmeya.calls] == [2, 2, 1]


def test_balance_thresholds_per_provider(clock: Clock, kolmeya: Gateway,
                                         twilio: Gateway) -> None:
    alerts: List[Any] = []

    class Alerts:
        @hookimpl
        def balance_low(self, provider: str, balance: Any, threshold: Any) -> None:
            alerts.append((provider, balance, threshold))

    with make_kit(clock, kolmeya, twilio, balance_low_threshold="500",
                  twilio_balance_low_threshold="20", **FAILOVER) as kit:
        kit.plugins.register(Alerts(), name="alerts")
        monitor = BalanceMonitor.from_settings(kit)
        assert monitor.thresholds == {"twilio": Decimal("20")}
        for name in kit.routed_providers():
            monitor.check(name, clock.now)
    assert alerts == [("kolmeya", Decimal("100.00"), Decimal("500"))]  # twilio's 100 >= 20


# -- what the dashboard and the metrics show ----------------------------------------------------

def test_dashboard_and_metrics_show_each_provider(clock: Clock, kolmeya: Gateway,
                                                  twilio: Gateway) -> None:
    import httpx

    from smskit.server import create_app
    from smskit.server.metrics import ServerMetrics
    from smskit.testing.servers import serve_in_thread

    with make_kit(clock, kolmeya, twilio, dashboard_token="painel", twilio_max_per_second="5",
                  **FAILOVER) as kit:
        kit.send_many(phones(4), "Olá", dispatch=False)
        kit.send(US, "Hello", provider="kolmeya", dispatch=False)  # stays: nowhere to go
        kolmeya.down = True
        Worker(kit).run_once()
        metrics = ServerMetrics(kit).render().decode()
        with serve_in_thread(create_app(kit)) as base:
            stats = httpx.get(f"{base}/api/stats", headers={"Authorization": "Bearer painel"},
                              params={"start": "2026-11-26", "end": "2026-11-26"}).json()
            page = httpx.get(f"{base}/dashboard", auth=("x", "painel")).text
    lines = {line["provider"]: line for line in stats["provider_status"]}
    assert {k: lines["kolmeya"][k] for k in ("circuit", "queued", "moved_out", "trips")} == {
        "circuit": "open", "queued": 1, "moved_out": 4, "trips": 1}
    assert {k: lines["twilio"][k] for k in ("circuit", "queued", "moved_in", "max_per_second")
            } == {"circuit": "closed", "queued": 0, "moved_in": 4, "max_per_second": 5.0}
    assert 'smskit_messages_rerouted_total{from="kolmeya",to="twilio"} 4.0' in metrics
    assert 'smskit_provider_circuit_open{provider="kolmeya"} 1.0' in metrics
    assert 'id="provider-status"' in page and "fora do ar" in page
