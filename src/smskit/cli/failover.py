"""The ``smskit demo --failover`` scenario: Kolmeya goes down mid-campaign, Twilio takes over.

It starts a Kolmeya simulator, a Twilio simulator and the reference webhook server on free
127.0.0.1 ports, uses a fresh SQLite file and the route ``* => kolmeya, twilio`` (Kolmeya
preferred, Twilio its failover; each with its own price), then sends a pt-BR reminder to
:data:`CONTACTS` people in three waves:

1. the first wave goes out through Kolmeya, whose delivery callbacks come back through the
   webhook server;
2. the Kolmeya simulator is taken down (its port refuses connections); the second wave is
   composed for Kolmeya, the request is refused, the circuit opens and the wave moves to
   Twilio, each move written in the message's history;
3. the third wave is composed while the circuit is open: it goes straight to Twilio.

Twilio's status callbacks (signed with ``X-Twilio-Signature``) come back through the same
webhook server. :func:`run_failover_demo` returns a :class:`FailoverReport` with the totals
per provider; ``report.problems`` lists every expectation the run missed: a message lost (not
accepted by any gateway), a message sent twice, one never moved, or a provider with no
messages.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import attrs

from smskit.config import Secret, Settings
from smskit.errors import ValidationError
from smskit.models import State
from smskit.timeutil import DEFAULT_TZ

__all__ = ["CONTACTS", "FailoverReport", "ProviderTotals", "run_failover_demo"]

#: People in the campaign, split into three waves.
CONTACTS = 45
WAVES = 3
TEMPLATE = "Olá {{ nome }}, sua fatura de {{ valor }} vence amanhã."
ROUTES = "* => kolmeya, twilio"
PRICES = {"kolmeya": "+55=0.08", "twilio": "+55=0.25, *=0.40"}
WAIT_SECONDS = 30.0
_FIRST = ("Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique",
          "Isabela", "João", "Karina", "Lucas", "Mariana", "Nícolas", "Olívia")


@attrs.define(kw_only=True)
class ProviderTotals:
    """One provider's part of the campaign."""

    provider: str
    messages: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    moved_in: int = 0
    moved_out: int = 0
    cost: Decimal = Decimal(0)
    circuit: str = "closed"


@attrs.define(kw_only=True)
class FailoverReport:
    """What the failover demo did, and which expectations it missed (``problems``)."""

    database: str
    database_kept: bool = False
    kolmeya_url: str = ""
    twilio_url: str = ""
    server_url: str = ""
    routes: str = ROUTES
    waves: List[Dict[str, Any]] = attrs.field(factory=list)
    providers: List[ProviderTotals] = attrs.field(factory=list)
    lost: int = 0
    sent_twice: int = 0
    failover_seconds: Optional[float] = None
    problems: List[str] = attrs.field(factory=list)
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the scenario reached every expected state."""
        return not self.problems


def people() -> List[Dict[str, str]]:
    """The campaign's rows (deterministic Brazilian mobile numbers)."""
    rows = []
    for index in range(CONTACTS):
        cents = 5990 + (index * 1337) % 20000
        rows.append({"telefone": f"+55119{81000000 + index * 7919:08d}",
                     "nome": _FIRST[index % len(_FIRST)],
                     "valor": f"R$ {cents // 100},{cents % 100:02d}"})
    return rows


def run_failover_demo(db_path: Optional[Path] = None,
                      progress: Callable[[str], None] = lambda line: None) -> FailoverReport:
    """Run the scenario; ``progress`` receives one line per step. Nothing is read from the
    environment or ``smskit.toml``. ``db_path`` must not exist yet (default: a temporary
    file, removed afterwards)."""
    if db_path is not None and db_path.exists():
        raise ValidationError(f"the demo needs a fresh database: {db_path} already exists")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smskit-failover-") as tmp:
        path = db_path if db_path is not None else Path(tmp) / "failover.db"
        report = FailoverReport(database=str(path), database_kept=db_path is not None)
        _Failover(path, report, progress).run()
    report.elapsed_seconds = round(time.monotonic() - started, 2)
    return report


def _wait(condition: Callable[[], bool], step: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        step()
        time.sleep(0.05)
    return True


class _Failover:
    """The scenario's steps, sharing the servers and the kit."""

    def __init__(self, db_path: Path, report: FailoverReport,
                 say: Callable[[str], None]) -> None:
        self.db_path = db_path
        self.report = report
        self.say = say
        self.rows = people()

    def run(self) -> None:
        from smskit.cli.scenario import _free_port
        from smskit.kit import SmsKit
        from smskit.plugins import Plugins
        from smskit.server.app import create_app
        from smskit.testing.servers import start_server
        from smskit_kolmeya import plugin as kolmeya_plugin
        from smskit_kolmeya.testing.simulator import KolmeyaSimulator
        from smskit_kolmeya.testing.simulator import SimulatorConfig as KolmeyaConfig
        from smskit_twilio import plugin as twilio_plugin
        from smskit_twilio.testing.simulator import DEFAULT_NUMBER, TwilioSimulator
        from smskit_twilio.testing.simulator import SimulatorConfig as TwilioConfig

        report = self.report
        token = secrets.token_urlsafe(30)
        self.kolmeya = KolmeyaSimulator(KolmeyaConfig(token=token, seed=7,
                                                      outcomes={3: 1.0}, callback_backoff=0.1))
        self.twilio = TwilioSimulator(TwilioConfig(seed=7, outcomes={"delivered": 1.0},
                                                   callback_backoff=0.1))
        self.kolmeya_server: Any = start_server(self.kolmeya.app)
        twilio_server = start_server(self.twilio.app)
        server = None
        kit = None
        try:
            report.kolmeya_url = self.kolmeya_server.base_url
            report.twilio_url = twilio_server.base_url
            report.server_url = f"http://127.0.0.1:{_free_port()}"
            values = {
                "routes": ROUTES, "circuit_cooldown": "600",
                "kolmeya_base_url": f"{report.kolmeya_url}/api/v1", "kolmeya_token": token,
                # One retry: the demo shows failover, not the client's patience.
                "kolmeya_max_attempts": "2",
                "twilio_base_url": report.twilio_url,
                "twilio_account_sid": self.twilio.config.account_sid,
                "twilio_auth_token": self.twilio.config.auth_token,
                "twilio_from": DEFAULT_NUMBER,
                **{f"{name}_prices": table for name, table in PRICES.items()}}
            settings = Settings(
                database_url=f"sqlite:///{self.db_path}", provider="kolmeya",
                public_url=report.server_url, webhook_secret=Secret(secrets.token_urlsafe(24)),
                timezone=DEFAULT_TZ, plugins=("kolmeya", "twilio"), values=values)
            # The two gateway plugins by hand: the demo needs exactly these, installed or not
            # as entry points.
            plugins = Plugins(settings, entry_points=False)
            plugins.register(kolmeya_plugin, name="kolmeya")
            plugins.register(twilio_plugin, name="twilio")
            kit = SmsKit(settings, plugins=plugins)
            self.kit = kit
            server = start_server(create_app(kit), port=int(report.server_url.rsplit(":", 1)[1]))
            kept = "" if report.database_kept else " (temporary)"
            self.say(f"Kolmeya simulator on {report.kolmeya_url}, Twilio simulator on "
                     f"{report.twilio_url}, webhook server on {report.server_url}, database "
                     f"{self.db_path}{kept}; routes: {ROUTES}")
            self._waves()
            self._settle()
            self._collect()
        finally:
            if server is not None:
                server.stop()
            if self.kolmeya_server is not None:
                self.kolmeya_server.stop()
            twilio_server.stop()
            self.kolmeya.close()
            self.twilio.close()
            if kit is not None:
                kit.close()

    # -- steps ---------------------------------------------------------------------------------
    def _send(self, wave: int) -> Dict[str, Any]:
        size = len(self.rows) // WAVES
        rows = self.rows[wave * size:(wave + 1) * size] if wave < WAVES - 1 else \
            self.rows[wave * size:]
        summary = self.kit.send_many(rows, TEMPLATE, phone_field="telefone",
                                     idempotency_prefix="fatura-failover",
                                     campaign_id="fatura-failover")
        found = {"wave": wave + 1, "recipients": summary.total, "sent": summary.sent,
                 "queued": summary.queued}
        self.report.waves.append(found)
        return found

    def _waves(self) -> None:
        first = self._send(0)
        self.say(f"wave 1: {first['sent']} of {first['recipients']} sent through Kolmeya")
        _wait(lambda: self._final("kolmeya"), self.kolmeya.advance, WAIT_SECONDS)
        self.say("Kolmeya's delivery callbacks came back; now the Kolmeya simulator goes down")
        self.kolmeya_server.stop()
        self.kolmeya_server = None
        down = time.monotonic()
        second = self._send(1)
        moved = self._moved()
        first_twilio = self._first_twilio_at()
        if first_twilio is not None:
            self.report.failover_seconds = round(first_twilio - down, 3)
        self.say(f"wave 2: Kolmeya refused the connection, its circuit opened and {moved} "
                 f"message(s) moved to Twilio; {second['sent']} sent")
        third = self._send(2)
        self.say(f"wave 3: composed while the circuit is open, {third['sent']} of "
                 f"{third['recipients']} went straight to Twilio")

    def _first_twilio_at(self) -> Optional[float]:
        # The simulator stamps creations with the wall clock; convert to the monotonic clock.
        created = [m.date_created for m in self.twilio.messages.values()]
        if not created:
            return None
        from smskit.models import utcnow

        age = (utcnow() - min(created)).total_seconds()
        return time.monotonic() - age

    def _moved(self) -> int:
        from smskit.store.analytics import StatsStore

        store = self.kit.store
        counts = store.reroute_counts() if isinstance(store, StatsStore) else {}
        return sum(counts.values())

    def _final(self, provider: str) -> bool:
        mine = [m for m in self.kit.store.list_messages(limit=CONTACTS * 2)
                if m.provider == provider]
        return all(m.state not in (State.OUTGOING, State.SENT) for m in mine)

    def _settle(self) -> None:
        done = _wait(lambda: self._final("twilio"), self.twilio.advance, WAIT_SECONDS)
        if not done:
            self.report.problems.append("Twilio's status callbacks did not settle in time")
        self.say("Twilio's signed status callbacks came back through the webhook server")

    # -- results -------------------------------------------------------------------------------
    def _collect(self) -> None:
        from smskit.routing.status import provider_lines

        kit, report = self.kit, self.report
        messages = kit.store.list_messages(limit=CONTACTS * 2)
        lines = {line.provider: line for line in provider_lines(kit, kit.clock())}
        for name in ("kolmeya", "twilio"):
            mine = [m for m in messages if m.provider == name]
            line = lines.get(name)
            report.providers.append(ProviderTotals(
                provider=name, messages=len(mine),
                sent=sum(1 for m in mine if m.state.rank >= State.SENT.rank),
                delivered=sum(1 for m in mine if m.state is State.DELIVERED),
                failed=sum(1 for m in mine if m.state in (State.ERROR, State.EXPIRED)),
                moved_in=line.moved_in if line else 0, moved_out=line.moved_out if line else 0,
                cost=sum((m.cost or Decimal(0) for m in mine), Decimal(0)),
                circuit=line.circuit if line else "closed"))
        report.lost = sum(1 for m in messages if m.state.rank < State.SENT.rank)
        kolmeya_refs = self.kolmeya.accepted_references()
        twilio_phones = [m.to for m in self.twilio.messages.values()]
        by_id = {m.id: m for m in messages}
        both = {by_id[ref].phone for ref in kolmeya_refs if ref in by_id} & set(twilio_phones)
        report.sent_twice = (sum(1 for n in kolmeya_refs.values() if n > 1)
                             + len(self.twilio.sent_twice()) + len(both))
        self._check(messages)

    def _check(self, messages: List[Any]) -> None:
        report, problems = self.report, self.report.problems
        totals = {p.provider: p for p in report.providers}
        if len(messages) != CONTACTS:
            problems.append(f"{len(messages)} message(s) stored, expected {CONTACTS}")
        if report.lost:
            problems.append(f"{report.lost} message(s) never reached a gateway")
        if report.sent_twice:
            problems.append(f"{report.sent_twice} message(s) were sent twice")
        size = CONTACTS // WAVES
        if totals["kolmeya"].sent != size:
            problems.append(f"Kolmeya sent {totals['kolmeya'].sent}, expected the first wave "
                            f"({size})")
        if totals["twilio"].sent != CONTACTS - size:
            problems.append(f"Twilio sent {totals['twilio'].sent}, expected the rest "
                            f"({CONTACTS - size})")
        if totals["twilio"].moved_in != size or totals["kolmeya"].moved_out != size:
            problems.append(f"{totals['kolmeya'].moved_out} message(s) moved off Kolmeya, "
                            f"expected the second wave ({size})")
        if totals["kolmeya"].circuit != "open":
            problems.append(f"Kolmeya's circuit is {totals['kolmeya'].circuit}, expected open")
        with_move = [m for m in messages if any(e.kind == "rerouted"
                                                 for e in self.kit.history(m.id))]
        if len(with_move) != size:
            problems.append(f"{len(with_move)} message(s) have a move in their history, "
                            f"expected {size}")
        undelivered = [p.provider for p in report.providers if p.delivered != p.sent]
        if undelivered:
            problems.append(f"not every accepted message was delivered by {undelivered}")
