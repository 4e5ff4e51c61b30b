"""The ``smskit demo`` scenario: the whole product on loopback, with nothing configured.

It starts a Kolmeya simulator and the reference webhook server on free 127.0.0.1 ports, uses a
fresh SQLite file, and runs a pt-BR billing reminder through the real pipeline:

1. a landline in the contact list is **rejected** (SMS needs a mobile number);
2. a customer already on the blacklist is **canceled**;
3. a reminder the operator scheduled for the evening falls in quiet hours and is **deferred**;
4. everyone else is sent through the simulator, whose status callbacks come back through the
   real webhook server to **delivered**, **error** (não entregue) and **expired**;
5. one customer answers ``SAIR``: the reply arrives through the webhook and puts the number
   on the blacklist (**opt-out**);
6. a daily 09:00 reminder schedule has its first occurrence materialised exactly once
   (``run_due`` is called twice), and the opted-out customer is left out of it.

:func:`run_demo` returns a :class:`DemoReport`; ``report.problems`` lists every expectation the
run missed (empty when the scenario worked), so CI catches regressions.
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import attrs

from smskit.config import Secret, Settings
from smskit.errors import ValidationError
from smskit.models import State, utcnow
from smskit.timeutil import DEFAULT_TZ, zone

__all__ = ["DEMO_TEMPLATE", "Contact", "ContactResult", "DemoReport", "run_demo"]

DEMO_TEMPLATE = "Olá {{ nome }}, sua fatura de {{ valor }} vence em {{ vencimento }}."
REMINDER_TEMPLATE = "Bom dia {{ nome }}! Lembrete: sua fatura de {{ valor }} vence hoje."
DAILY_RULE = "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
OPTOUT_TEXT = "SAIR"
WAIT_SECONDS = 30.0

# Roles of some contacts (everyone else simply receives the reminder).
LANDLINE, BLACKLISTED, DEFERRED, OPTOUT, FAILS, EXPIRES = 3, 7, 12, 1, 5, 9

_NAMES = (
    "Ana Souza", "Bruno Oliveira", "Carla Mendes", "Diego Santos", "Eduarda Lima",
    "Felipe Costa", "Gabriela Rocha", "Henrique Alves", "Isabela Martins", "João Pereira",
    "Karina Barbosa", "Lucas Ribeiro", "Mariana Carvalho", "Nícolas Gomes", "Olívia Fernandes",
    "Paulo Araújo", "Raquel Nunes", "Rafael Teixeira", "Sabrina Moreira", "Thiago Correia",
    "Vitória Dias", "Vinícius Cardoso", "Wesley Monteiro", "Yasmin Freitas", "Luana Pinto",
    "Marcos Vieira", "Patrícia Castro", "Renato Barros", "Simone Azevedo", "Tânia Ramos",
)
_AREAS = (11, 21, 31, 41, 51, 61, 71, 81, 85, 48, 19, 27, 62, 92, 91)


@attrs.frozen
class Contact:
    """A customer of the demo's contact list."""

    name: str
    phone: str
    valor: str
    vencimento: str

    @property
    def first_name(self) -> str:
        """The name used in the greeting."""
        return self.name.split()[0]

    def row(self) -> Dict[str, str]:
        """The contact as a CSV-like row: ``telefone`` plus the template variables."""
        return {"telefone": self.phone, "nome": self.first_name, "valor": self.valor,
                "vencimento": self.vencimento}


def _format(index: int, area: int, number: str) -> str:
    """The same kind of number written the many ways a CRM holds them."""
    style = index % 4
    if style == 0:
        return f"({area}) {number[:5]}-{number[5:]}"
    if style == 1:
        return f"+55 {area} {number[:5]}-{number[5:]}"
    if style == 2:
        return f"55{area}{number}"
    return f"0{area} {number[:5]} {number[5:]}"


def contacts() -> List[Contact]:
    """The demo's 30 contacts (deterministic); index :data:`LANDLINE` is a landline."""
    out = []
    for index, name in enumerate(_NAMES):
        area = _AREAS[index % len(_AREAS)]
        number = f"9{8 + index % 2}{(index * 7919 + 1234567) % 10_000_000:07d}"
        phone = _format(index, area, number)
        if index == LANDLINE:
            phone = f"({area}) 3456-78{index:02d}"
        cents = 4990 + (index * 1337) % 20000
        valor = f"R$ {cents // 100},{cents % 100:02d}"
        out.append(Contact(name, phone, valor, f"{10 + index % 15:02d}/12"))
    return out


@attrs.frozen(kw_only=True)
class ContactResult:
    """Where one contact's reminder ended."""

    name: str
    phone: str
    message_id: Optional[str]
    state: str
    cost: Optional[Decimal]
    detail: str = ""


@attrs.define(kw_only=True)
class DemoReport:
    """Everything the demo did, and which expectations it missed (``problems``)."""

    database: str
    #: ``False`` when the database was a temporary file, removed when the demo ended.
    database_kept: bool = False
    simulator_url: str = ""
    server_url: str = ""
    timezone: str = DEFAULT_TZ
    quiet_hours: str = ""
    contacts: List[ContactResult] = attrs.field(factory=list)
    totals: Dict[str, Any] = attrs.field(factory=dict)
    optout: Dict[str, Any] = attrs.field(factory=dict)
    schedule: Dict[str, Any] = attrs.field(factory=dict)
    callbacks: Dict[str, Any] = attrs.field(factory=dict)
    balance: Optional[Decimal] = None
    problems: List[str] = attrs.field(factory=list)
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the scenario reached every expected state."""
        return not self.problems


def _quiet_window(now: dt.datetime, tz: str) -> Tuple[str, dt.datetime]:
    """A quiet-hours window that does not contain ``now`` (the usual 21:00-08:00 by day), and a
    moment inside it for the deferred reminder."""
    tzinfo = zone(tz)
    local = now.astimezone(tzinfo)
    if 8 <= local.hour < 20:
        start = dt.datetime.combine(local.date(), dt.time(21, 0), tzinfo=tzinfo)
        window = "21:00-08:00"
    else:  # at night the usual window would hold every send: use one that starts later
        start = (local + dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(hours=8)
        window = f"{start:%H:%M}-{end:%H:%M}"
    inside = (start + dt.timedelta(minutes=90)).astimezone(dt.timezone.utc)
    return window, inside


def _wait(condition: Callable[[], bool], step: Callable[[], object], timeout: float) -> bool:
    """Call ``step`` until ``condition`` holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        step()
        time.sleep(0.05)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_demo(db_path: Optional[Path] = None,
             progress: Callable[[str], None] = lambda line: None) -> DemoReport:
    """Run the scenario; ``progress`` receives one line per step. Nothing is read from the
    environment or ``smskit.toml``. ``db_path`` must not exist yet (default: a temporary
    file, removed afterwards)."""
    if db_path is not None and db_path.exists():
        raise ValidationError(f"the demo needs a fresh database: {db_path} already exists")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="smskit-demo-") as tmp:
        path = db_path if db_path is not None else Path(tmp) / "demo.db"
        report = DemoReport(database=str(path), database_kept=db_path is not None)
        _Scenario(path, report, progress).run()
    report.elapsed_seconds = round(time.monotonic() - started, 2)
    return report


class _Scenario:
    """The demo's steps, sharing the running servers and the kit."""

    def __init__(self, db_path: Path, report: DemoReport,
                 progress: Callable[[str], None]) -> None:
        self.db_path = db_path
        self.report = report
        self.say = progress
        self.people = contacts()
        self.message_of: Dict[int, str] = {}
        self.note: Dict[int, str] = {}

    def run(self) -> None:
        from smskit.kit import SmsKit
        from smskit.server.app import create_app
        from smskit.testing.servers import start_server
        from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

        report = self.report
        token = secrets.token_urlsafe(30)
        window, self.deferred_at = _quiet_window(utcnow(), DEFAULT_TZ)
        report.quiet_hours = window
        self.sim = KolmeyaSimulator(SimulatorConfig(
            token=token, seed=7, outcomes={3: 0.8, 4: 0.12, 6: 0.08},
            forced_outcomes={self._national(FAILS): 4, self._national(EXPIRES): 6,
                             self._national(OPTOUT): 3},
            callback_backoff=0.1))
        sim_server = start_server(self.sim.app)
        server = None
        kit = None
        try:
            report.simulator_url = sim_server.base_url
            port = _free_port()
            report.server_url = f"http://127.0.0.1:{port}"
            settings = Settings(
                database_url=f"sqlite:///{self.db_path}", provider="kolmeya",
                public_url=report.server_url, webhook_secret=Secret(secrets.token_urlsafe(24)),
                quiet_hours=window, timezone=DEFAULT_TZ, plugins=("kolmeya",),
                values={"kolmeya_base_url": f"{sim_server.base_url}/api/v1",
                        "kolmeya_token": token})
            kit = SmsKit(settings)
            self.kit = kit
            server = start_server(create_app(kit), port=port)
            kept = "" if report.database_kept else " (temporary)"
            self.say(f"Kolmeya simulator on {report.simulator_url}, webhook server on "
                     f"{report.server_url}, database {self.db_path}{kept}")
            self._send()
            self._statuses()
            self._optout()
            self._schedule()
            report.balance = kit.provider().balance()
            self._collect()
        finally:
            if server is not None:
                server.stop()
            sim_server.stop()
            self.sim.close()
            if kit is not None:
                kit.close()

    def _national(self, index: int) -> str:
        from smskit.phone import national_digits

        return national_digits(self.people[index].phone)

    # -- steps ---------------------------------------------------------------------------------
    def _send(self) -> None:
        kit = self.kit
        blocked = self.people[BLACKLISTED]
        kit.blacklist_add(blocked.phone, reason="pediu para não receber SMS", source="demo")
        self.say(f"{blocked.name} is on the blacklist beforehand")

        deferred = self.people[DEFERRED]
        outcome = kit.send(deferred.phone, DEMO_TEMPLATE, variables=deferred.row(),
                           at=self.deferred_at, campaign_id="fatura-demo")
        self.message_of[DEFERRED] = outcome.message_id or ""
        if outcome.deferred_until is not None:
            local = outcome.deferred_until.astimezone(zone(DEFAULT_TZ))
            self.note[DEFERRED] = f"quiet hours: goes out {local:%d/%m %H:%M}"
        self.say(f"{deferred.name}'s reminder was set for the evening: quiet hours defer it")

        rows = [(i, c) for i, c in enumerate(self.people) if i != DEFERRED]

        def on_outcome(result: Any) -> None:
            index = rows[result.index][0]
            self.message_of[index] = result.message_id or ""
            if result.reason:
                reason = str(result.reason)
                # "invalid phone number '(41) 3456-7803': it is a fixed line..." -> the why
                self.note[index] = reason.split("': ", 1)[-1]

        summary = kit.send_many([c.row() for _, c in rows], DEMO_TEMPLATE,
                                phone_field="telefone", idempotency_prefix="fatura-demo",
                                campaign_id="fatura-demo", on_outcome=on_outcome)
        self.say(f"bulk send to {summary.total} contacts: {summary.sent} accepted by the "
                 f"gateway, {summary.rejected} rejected, {summary.canceled} canceled")

    def _bulk_ids(self) -> List[str]:
        return [m for i, m in self.message_of.items() if m and i != DEFERRED]

    def _statuses(self) -> None:
        kit = self.kit

        def settled() -> bool:
            return all(m.state is not State.SENT and m.state is not State.OUTGOING
                       for m in kit.store.get_many(self._bulk_ids()))

        done = _wait(settled, self.sim.advance, WAIT_SECONDS)
        if not done:
            self.report.problems.append("status callbacks did not settle every message in time")
        calls = self._count_callbacks()
        self.say(f"{calls['statuses']} delivery status(es) came back in {calls['accepted']} "
                 "callback(s) through the webhook server")

    def _count_callbacks(self) -> Dict[str, int]:
        log = self.sim.callbacks_sent
        ok = [entry for entry in log if entry["ok"]]
        self.report.callbacks = {
            "posted": len(log), "accepted": len(ok),
            "statuses": sum(len(e["payload"].get("messages", ())) for e in ok
                            if e["kind"] == "status"),
            "replies": sum(1 for e in ok if e["kind"] == "reply"),
        }
        return self.report.callbacks

    def _optout(self) -> None:
        kit = self.kit
        person = self.people[OPTOUT]
        message = kit.get(self.message_of.get(OPTOUT, ""))
        if message is None or not message.provider_message_id:
            self.report.problems.append(f"{person.name} has no sent message to reply to")
            return
        self.sim.add_reply(message.provider_message_id, OPTOUT_TEXT)
        listed = _wait(lambda: kit.store.is_blacklisted(message.phone),
                       self.sim.deliver_callbacks, WAIT_SECONDS)
        self.report.optout = {"name": person.name, "phone": message.phone,
                              "reply": OPTOUT_TEXT, "blacklisted": listed}
        self.note[OPTOUT] = f"replied {OPTOUT_TEXT}: now on the blacklist"
        self._count_callbacks()
        if not listed:
            self.report.problems.append(f"the {OPTOUT_TEXT} reply did not blacklist "
                                        f"{message.phone}")
        self.say(f"{person.name} replied {OPTOUT_TEXT!r}: opted out through the webhook")

    def _schedule(self) -> None:
        from smskit.outreach.scheduler import add_schedule, run_due

        kit = self.kit
        chosen = [self.people[i] for i in (0, OPTOUT, 2)]
        request = {"text": REMINDER_TEMPLATE, "campaign_id": "lembrete-diario",
                   "recipients": [{"phone": c.phone, "nome": c.first_name, "valor": c.valor}
                                  for c in chosen]}
        schedule = add_schedule(kit, "lembrete-diario", request, rrule=DAILY_RULE,
                                tz=DEFAULT_TZ)
        occurrence = schedule.next_run_at or utcnow()
        first = run_due(kit, now=occurrence)
        second = run_due(kit, now=occurrence)
        stored = kit.store.get_schedule(schedule.id)
        run = first[0] if first else None
        self.report.schedule = {
            "id": schedule.id, "name": schedule.name, "rrule": DAILY_RULE,
            "occurrence": occurrence, "first_call_runs": len(first),
            "second_call_runs": len(second),
            "messages": run.created if run else 0, "canceled": run.canceled if run else 0,
            "next_run_at": stored.next_run_at if stored else None,
        }
        if len(first) != 1 or not first[0].won or second:
            self.report.problems.append(
                f"the schedule's first occurrence ran {len(first)} + {len(second)} time(s), "
                "expected exactly once")
        elif run is not None and (run.created != len(chosen) or run.canceled != 1):
            self.report.problems.append(
                f"the schedule run made {run.created} message(s) with {run.canceled} "
                f"canceled, expected {len(chosen)} with 1 canceled (the opt-out)")
        self.say(f"daily 09:00 reminder: first occurrence materialised once "
                 f"({len(first)} run, then {len(second)})")

    # -- results -------------------------------------------------------------------------------
    def _collect(self) -> None:
        kit, report = self.kit, self.report
        counts = dict.fromkeys(("sent", "delivered", "error", "expired", "rejected",
                                "canceled", "deferred", "other"), 0)
        cost = Decimal(0)
        accepted = (State.SENT, State.DELIVERED, State.ERROR, State.EXPIRED)
        for index, person in enumerate(self.people):
            message = kit.get(self.message_of.get(index, ""))
            state = message.state if message is not None else None
            label = state.value if state is not None else "missing"
            if state is State.OUTGOING and index == DEFERRED:
                label = "deferred"
            if state in accepted and message is not None:
                counts["sent"] += 1
                cost += message.cost or Decimal(0)
            key = label if label in counts else "other"
            if key != "sent":
                counts[key] += 1
            detail = self.note.get(index, "")
            if message is not None and message.state in (State.ERROR, State.EXPIRED):
                detail = message.error_text or detail
            billed = message is not None and (state in accepted or label == "deferred")
            report.contacts.append(ContactResult(
                name=person.name, phone=message.phone if message is not None else person.phone,
                message_id=message.id if message is not None else None, state=label,
                cost=message.cost if billed and message is not None else None, detail=detail))
        counts["failed"] = counts["error"] + counts["expired"]
        report.totals = {"contacts": len(self.people), **counts, "cost": cost}
        self._check(counts)

    def _check(self, counts: Dict[str, int]) -> None:
        problems = self.report.problems
        expected = {"rejected": 1, "canceled": 1, "deferred": 1, "other": 0}
        for name, want in expected.items():
            if counts[name] != want:
                problems.append(f"{counts[name]} {name} message(s), expected {want}")
        for name in ("delivered", "error", "expired"):
            if counts[name] < 1:
                problems.append(f"no message ended {name}")
        if counts["sent"] != counts["delivered"] + counts["error"] + counts["expired"]:
            problems.append("some accepted messages never reached a final state")
        doubles = [ref for ref, n in self.sim.accepted_references().items() if n > 1]
        if doubles:
            problems.append(f"{len(doubles)} message(s) were accepted by the gateway twice")
