"""The audited blacklist, its push to the gateway (retried until acknowledged), CSV import and
export, and the low-balance check. Memory store and SQLite file store."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

import smskit
from cli_helpers import cli, cli_env  # noqa: F401
from smskit.config import Settings
from smskit.errors import InvalidPhoneError, TransientProviderError
from smskit.kit import SmsKit
from smskit.models import InboundMessage, State
from smskit.outreach.balance import BalanceMonitor, read_balances
from smskit.outreach.blacklist_sync import backoff, export_blacklist, import_blacklist, push_pending
from smskit.plugins import Plugins
from smskit.provider import Capabilities
from smskit.providers.loopback import LoopbackProvider
from smskit.store.memory import MemoryStore
from smskit.worker import Worker

UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 10, 15, 0, tzinfo=UTC)
A, B, C = "+5511910000001", "+5511910000002", "+5511910000003"


class Clock:
    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Gateway(LoopbackProvider):
    """A loopback gateway whose blacklist endpoint can fail, refuse numbers, and records calls."""

    def __init__(self, *, failures: int = 0, refuse: Sequence[str] = (),
                 balance: Decimal = Decimal("100"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.refused = set(refuse)
        self.blacklist_calls: List[Any] = []
        self.current_balance = balance

    def _check(self, action: str, phones: Sequence[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise TransientProviderError("blacklist endpoint unavailable (503)")
        bad = [p for p in phones if p in self.refused]
        if bad:
            raise InvalidPhoneError(bad[0], "not a Brazilian number")
        self.blacklist_calls.append((action, list(phones)))

    def blacklist_add(self, phones: Sequence[str]) -> None:
        self._check("add", phones)
        super().blacklist_add(phones)

    def blacklist_remove(self, phones: Sequence[str]) -> None:
        self._check("remove", phones)
        super().blacklist_remove(phones)

    def balance(self) -> Decimal:
        return self.current_balance


class NoBlacklist(LoopbackProvider):
    capabilities = Capabilities(reconcile=True, balance=True)


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'blacklist.db'}")
    yield sql
    sql.close()


def make_kit(store: Any, provider: Optional[LoopbackProvider] = None,
             clock: Optional[Clock] = None, **values: str) -> SmsKit:
    settings = Settings.load(environ={}, provider="loopback", database_url="memory://",
                             **values)
    return SmsKit(settings, store=store, provider=provider or Gateway(),
                  plugins=Plugins(settings, entry_points=False), clock=clock or Clock())


def gateway(kit: SmsKit) -> Gateway:
    provider = kit.provider()
    assert isinstance(provider, Gateway)
    return provider


# -- audit and queue ------------------------------------------------------------------------------
def test_every_change_is_audited_and_queued_for_the_gateway(store: Any) -> None:
    kit = make_kit(store)
    assert kit.blacklist_add("(11) 91000-0001", reason="pediu por telefone", source="cli:ana")
    assert not kit.blacklist_add(A, reason="de novo", source="api")  # no-op: nothing written
    assert kit.blacklist_remove(A, reason="engano", source="api")
    assert not kit.blacklist_remove(A)
    audit = store.blacklist_audit()
    assert [(e.phone, e.action, e.source, e.reason) for e in audit] == [
        (A, "add", "cli:ana", "pediu por telefone"), (A, "remove", "api", "engano")]
    assert all(e.created_at == NOW for e in audit)
    items = store.pending_blacklist_sync("loopback", NOW)
    assert [(i.phone, i.action, i.status, i.attempts) for i in items] == [
        (A, "add", "pending", 0), (A, "remove", "pending", 0)]
    assert store.blacklist_sync_backlog() == {"loopback": 2}
    assert store.blacklist_audit(B) == []


def test_sync_targets_come_from_the_settings(store: Any) -> None:
    kit = make_kit(store, blacklist_sync_providers="kolmeya, outro")
    kit.blacklist_add(A)
    assert store.blacklist_sync_backlog() == {"kolmeya": 1, "outro": 1}
    none = make_kit(MemoryStore(), blacklist_sync_providers="")
    none.blacklist_add(A)
    assert none.store.blacklist_sync_backlog() == {}  # type: ignore[attr-defined]


def test_pushes_go_in_queue_order_and_are_acknowledged(store: Any) -> None:
    kit = make_kit(store)
    kit.blacklist_add(A)
    kit.blacklist_add(B)
    kit.blacklist_remove(A)
    kit.blacklist_add(C)
    report = Worker(kit, poll_replies=False).run_once()
    assert report.blacklist["loopback"].acknowledged == 4
    assert "blacklist sync 4 acknowledged" in report.describe()
    assert gateway(kit).blacklist_calls == [("add", [A, B]), ("remove", [A]), ("add", [C])]
    assert gateway(kit).gateway_blacklist == {B, C}
    assert store.blacklist_sync_backlog() == {}
    assert {i.status for i in store.blacklist_sync_items()} == {"acknowledged"}
    assert Worker(kit, poll_replies=False).run_once().empty


def test_a_failing_gateway_is_retried_with_backoff_until_acknowledged(store: Any) -> None:
    clock = Clock()
    kit = make_kit(store, provider=Gateway(failures=2), clock=clock)
    kit.blacklist_add(A, reason="SAIR")
    worker = Worker(kit, poll_replies=False)

    first = worker.run_once().blacklist["loopback"]
    assert (first.failed, first.retry_at) == (1, NOW + backoff(1))
    assert backoff(1) == dt.timedelta(seconds=30) and backoff(2) == dt.timedelta(minutes=1)
    clock.advance(10)
    assert not worker.run_once().blacklist["loopback"].busy  # waiting: not even attempted
    clock.advance(25)
    second = worker.run_once().blacklist["loopback"]
    assert second.failed == 1 and second.retry_at == clock.now + backoff(2)
    (item,) = store.pending_blacklist_sync("loopback", clock.now + dt.timedelta(hours=1))
    assert item.attempts == 2 and "503" in (item.last_error or "")
    assert gateway(kit).gateway_blacklist == set()
    clock.advance(61)
    third = worker.run_once().blacklist["loopback"]
    assert third.acknowledged == 1
    assert gateway(kit).gateway_blacklist == {A}
    (done,) = store.blacklist_sync_items()
    assert (done.status, done.attempts, done.acknowledged_at) == ("acknowledged", 3, clock.now)
    assert store.is_blacklisted(A)  # the local list never waited for the gateway


def test_a_number_the_gateway_cannot_take_is_refused_and_the_rest_pushed(store: Any) -> None:
    kit = make_kit(store, provider=Gateway(refuse=[B]))
    for phone in (A, B, C):
        kit.blacklist_add(phone)
    report = push_pending(kit)
    assert (report.acknowledged, report.refused) == (2, 1)
    assert gateway(kit).gateway_blacklist == {A, C}
    refused = [i for i in store.blacklist_sync_items() if i.status == "refused"]
    assert [i.phone for i in refused] == [B] and "not a Brazilian" in (refused[0].last_error or "")


def test_a_provider_without_a_blacklist_skips_its_items(store: Any) -> None:
    kit = make_kit(store, provider=NoBlacklist())
    kit.blacklist_add(A)
    assert push_pending(kit).skipped == 1
    assert [i.status for i in store.blacklist_sync_items()] == ["skipped"]


def test_thousands_of_numbers_go_in_requests_of_1000(store: Any) -> None:
    kit = make_kit(store)
    rows = [{"phone": f"119{20_000_000 + i:08d}"} for i in range(2500)]
    assert import_blacklist(kit, rows, source="import:lista.csv").added == 2500
    assert push_pending(kit).acknowledged == 2500
    assert [len(phones) for _, phones in gateway(kit).blacklist_calls] == [1000, 1000, 500]


def test_an_optout_reply_is_audited_and_pushed(store: Any) -> None:
    kit = make_kit(store)
    sent = kit.send(A, "Promoção!")
    kit.receive(InboundMessage(provider="loopback", provider_reply_id="1", phone=A,
                               body="Sair", in_reply_to_message_id=sent.message_id))
    (entry,) = store.blacklist_audit(A)
    assert (entry.source, entry.reason) == ("inbound:loopback", "opt-out keyword SAIR")
    Worker(kit, poll_replies=False).run_once()
    assert A in gateway(kit).gateway_blacklist
    assert kit.send(A, "Outra").state is State.CANCELED


def test_a_kolmeya_failure_while_finding_a_refused_number_waits_for_its_backoff(
        kolmeya_sim: Any, store: Any) -> None:
    """A foreign number makes the push go one number at a time; Kolmeya failing on the way
    used to raise out of ``push_pending`` (the worker cycle lost, no attempt counted, the
    gateway asked again at once every cycle). Now it is a failure like any other."""
    from smskit_kolmeya.provider import KolmeyaProvider

    simulator, base = kolmeya_sim
    clock = Clock()
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token, kolmeya_max_attempts="1",
                             reply_poll_every="0")
    kit = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings),
                 plugins=Plugins(settings, entry_points=False), clock=clock)
    foreign = "+351912345678"
    for phone in (foreign, A, B):
        kit.blacklist_add(phone, reason="SAIR")
    simulator.configure(fail_500_rate=1.0, fault_endpoints=["blacklist/store"])

    first = push_pending(kit)
    assert (first.failed, first.retry_at) == (2, NOW + backoff(1))
    assert "500" in first.errors[-1]
    items = {i.phone: i for i in store.blacklist_sync_items()}
    assert (items[A].status, items[A].attempts) == ("pending", 1)
    assert items[foreign].status == "refused"
    assert "500" in (items[B].last_error or "")
    clock.advance(10)
    assert not push_pending(kit).busy  # waiting for the back-off: Kolmeya is left alone

    simulator.configure(fail_500_rate=0.0)
    clock.advance(25)
    second = push_pending(kit)
    assert (second.acknowledged, second.failed) == (2, 0)
    assert simulator.blacklist == {A[3:], B[3:]}
    assert store.blacklist_sync_backlog() == {}
    kit.close()


def test_a_mobile_written_before_the_ninth_digit_blocks_the_mobile(store: Any) -> None:
    """An opt-out list kept since before 2016 ("(11) 8765-0041") names people whose mobiles
    now have a 9: the entry blocks that number, instead of being refused as invalid."""
    kit = make_kit(store)
    assert kit.blacklist_add("(11) 8765-0041", reason="pediu em 2014")
    report = import_blacklist(kit, [{"phone": "1187650042"}, {"phone": "(11) 3333-444"}],
                              source="import:antiga.csv")
    assert (report.added, report.invalid) == (1, 1)
    assert {e.phone for e in store.list_blacklist()} == {"+5511987650041", "+5511987650042"}
    for phone in ("(11) 98765-0041", "+55 11 98765-0042"):
        assert kit.send(phone, "Promoção!").state is State.CANCELED
    assert kit.blacklist_remove("11 8765-0041", reason="voltou")
    assert kit.send("(11) 98765-0041", "Promoção!").state is State.SENT


# -- CSV ------------------------------------------------------------------------------------------
def test_csv_export_and_import_round_trip(store: Any) -> None:
    kit = make_kit(store)
    kit.blacklist_add(A, reason="pediu, por e-mail", source="api")
    kit.blacklist_add(B, reason="", source="api")
    out = io.StringIO()
    assert export_blacklist(kit, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["phone"] for r in rows] == [A, B] and rows[0]["reason"] == "pediu, por e-mail"

    other = make_kit(MemoryStore())
    report = import_blacklist(other, [*rows, {"phone": "xyz"}], source="import:bl.csv")
    assert (report.added, report.already, report.invalid) == (2, 0, 1)
    copied = {e.phone: e for e in other.store.list_blacklist()}
    assert copied[A].reason == "pediu, por e-mail" and copied[B].reason == "imported"
    assert {e.source for e in copied.values()} == {"import:bl.csv"}




def test_blacklist_commands_export_import_audit_and_sync(cli_env: Dict[str, str],  # noqa: F811
                                                         tmp_path: Path) -> None:
    assert cli("blacklist", "add", "11910000001", "--reason", "pediu").exit_code == 0
    assert cli("blacklist", "add", "11910000002", "--gateway").exit_code == 0
    exported = tmp_path / "bl.csv"
    assert cli("blacklist", "export", str(exported)).exit_code == 0
    assert cli("blacklist", "remove", "11910000001", "--reason", "engano").exit_code == 0
    imported = json.loads(cli("blacklist", "import", str(exported), "--json").stdout)
    assert (imported["added"], imported["already"]) == (1, 1)
    audit = json.loads(cli("blacklist", "audit", "11910000001", "--json").stdout)
    assert [(a["action"], a["source"].split(":")[0], a["reason"]) for a in audit] == [
        ("add", "cli", "pediu"), ("remove", "cli", "engano"), ("add", "import", "pediu")]
    assert audit[2]["source"] == "import:bl.csv"
    table = cli("blacklist", "audit")
    assert "import:bl.csv" in table.stdout
    synced = json.loads(cli("blacklist", "sync", "--json").stdout)
    assert synced["report"]["acknowledged"] == 2 and synced["pending"] == {}  # --gateway did 2


def test_blacklist_add_and_remove_report_the_gateway_push_alike(
        cli_env: Dict[str, str]) -> None:  # noqa: F811
    added = cli("blacklist", "add", "11910000001", "--gateway")
    assert added.stdout.splitlines() == ["+5511910000001: added",
                                         "also sent to the loopback blacklist"]
    removed = cli("blacklist", "remove", "11910000001", "11910000002", "--gateway")
    assert removed.stdout.splitlines() == ["+5511910000001: removed",
                                           "+5511910000002: was not on the blacklist",
                                           "also sent to the loopback blacklist"]
    as_json = json.loads(cli("blacklist", "remove", "11910000001", "--gateway",
                             "--json").stdout)
    assert as_json == {"removed": [], "absent": ["+5511910000001"], "gateway": "loopback"}
    old_form = cli("blacklist", "add", "(11) 8765-0043")  # before the ninth digit
    assert old_form.stdout.splitlines() == ["+5511987650043: added"]


# -- low balance ----------------------------------------------------------------------------------
class Alerts:
    def __init__(self) -> None:
        self.calls: List[Any] = []

    @smskit.hookimpl
    def balance_low(self, provider: str, balance: Any, threshold: Any) -> None:
        self.calls.append((provider, balance, threshold))


def test_balance_low_fires_once_per_crossing(store: Any) -> None:
    clock = Clock()
    provider = Gateway(balance=Decimal("100"))
    kit = make_kit(store, provider=provider, clock=clock, balance_low_threshold="50",
                   balance_check_interval="60")
    alerts = Alerts()
    kit.plugins.register(alerts)
    worker = Worker(kit, poll_replies=False)
    assert worker.run_once().balances["loopback"].balance == Decimal("100")
    provider.current_balance = Decimal("40")
    clock.advance(30)
    assert worker.run_once().balances == {}  # not due yet: the gateway is not asked
    clock.advance(31)
    report = worker.run_once()
    assert report.balances["loopback"].alerted and "below 50" in report.describe()
    assert alerts.calls == [("loopback", Decimal("40"), Decimal("50"))]
    provider.current_balance = Decimal("30")
    for _ in range(3):
        clock.advance(61)
        worker.run_once()
    assert len(alerts.calls) == 1  # still low: no repeat
    restarted = Worker(kit, poll_replies=False)  # a restart remembers the state in the store
    clock.advance(61)
    restarted.run_once()
    assert len(alerts.calls) == 1
    provider.current_balance = Decimal("60")
    clock.advance(61)
    restarted.run_once()
    provider.current_balance = Decimal("20")
    clock.advance(61)
    restarted.run_once()
    assert alerts.calls[-1] == ("loopback", Decimal("20"), Decimal("50"))
    assert len(alerts.calls) == 2
    (reading,) = read_balances(store).values()
    assert (reading.balance, reading.low, reading.checked_at) == (Decimal("20"), True, clock.now)


def test_no_threshold_means_no_balance_check(store: Any) -> None:
    kit = make_kit(store)
    monitor = BalanceMonitor.from_settings(kit)
    assert not monitor.enabled and monitor.check() is None
    assert Worker(kit, poll_replies=False).run_once().balances == {}
    with pytest.raises(smskit.errors.ConfigurationError, match="balance_low_threshold"):
        BalanceMonitor.from_settings(make_kit(MemoryStore(), balance_low_threshold="muito"))


def test_the_balance_is_a_prometheus_gauge(store: Any) -> None:
    from smskit.server.metrics import ServerMetrics

    kit = make_kit(store, provider=Gateway(balance=Decimal("12.5")),
                   balance_low_threshold="20")
    BalanceMonitor.from_settings(kit).check()
    kit.blacklist_add(A)
    text = ServerMetrics(kit).render().decode()
    assert 'smskit_provider_balance{provider="loopback"} 12.5' in text
    assert 'smskit_provider_balance_low{provider="loopback"} 1.0' in text
    assert 'smskit_blacklist_sync_pending{provider="loopback"} 1.0' in text
