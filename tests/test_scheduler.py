"""Schedules: one-shot and recurring (wall clock, DST-safe), validation, and exactly-once runs
(repeated calls, catch-up after downtime, a crash mid-run, two processes racing on SQLite)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from smskit.config import Settings
from smskit.errors import (
    ConfigurationError,
    InvalidPhoneError,
    NotFoundError,
    StoreError,
    TemplateError,
    ValidationError,
)
from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import Message, State
from smskit.outreach.scheduler import (
    SendRequest,
    add_schedule,
    next_occurrence,
    run_due,
    run_now,
    schedule_tag,
    upcoming,
)
from smskit.plugins import Plugins
from smskit.providers.loopback import LoopbackProvider
from smskit.store.base import Schedule, Store
from smskit.store.memory import MemoryStore
from smskit.timeutil import zone
from smskit.worker import Worker

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")
NY = zone("America/New_York")

REQUEST = {
    "text": "Olá {{ nome }}, sua fatura vence hoje.",
    "recipients": [
        {"phone": "(11) 98765-4321", "nome": "Ana"},
        {"phone": "21 99876-5432", "nome": "Bruno"},
        {"phone": "+55 31 98765-1234", "nome": "Carla"},
    ],
    "tags": ["cobranca"],
    "campaign_id": "fatura-marco",
}


class Clock:
    """A settable clock for the kit."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def make_kit(store: Store, clock: Callable[[], dt.datetime]) -> SmsKit:
    settings = Settings(provider="loopback", database_url="memory://")
    return SmsKit(settings, store=store, provider=LoopbackProvider(),
                  plugins=Plugins(settings, entry_points=False), clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC))  # 07:00 in São Paulo


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield sql
    sql.close()


@pytest.fixture
def kit(store: Store, clock: Clock) -> SmsKit:
    return make_kit(store, clock)


def messages_of(kit: SmsKit, schedule_id: str) -> List[Message]:
    return [m for m in kit.store.list_messages(limit=10_000) if schedule_tag(schedule_id) in m.tags]


# -- creating ---------------------------------------------------------------------------------
def test_one_shot_runs_once_at_its_local_time(kit: SmsKit, clock: Clock) -> None:
    schedule = add_schedule(kit, "aviso", REQUEST, at=dt.datetime(2024, 3, 1, 15, 0))
    assert schedule.next_run_at == dt.datetime(2024, 3, 1, 18, 0, tzinfo=UTC)  # 15:00 -03:00
    assert schedule.rrule is None

    assert run_due(kit, dt.datetime(2024, 3, 1, 17, 59, tzinfo=UTC)) == []
    assert messages_of(kit, schedule.id) == []

    clock.now = dt.datetime(2024, 3, 1, 18, 0, 5, tzinfo=UTC)
    [run] = run_due(kit)
    assert run.won and run.created == 3 and run.next_run_at is None
    sent = messages_of(kit, schedule.id)
    assert sorted(m.body for m in sent) == [
        "Olá Ana, sua fatura vence hoje.",
        "Olá Bruno, sua fatura vence hoje.",
        "Olá Carla, sua fatura vence hoje.",
    ]
    assert {m.state for m in sent} == {State.OUTGOING}
    assert all(m.campaign_id == "fatura-marco" and "cobranca" in m.tags for m in sent)

    stored = kit.store.get_schedule(schedule.id)
    assert stored is not None and stored.next_run_at is None and not stored.active
    assert stored.runs == 1
    clock.now += dt.timedelta(days=3)
    assert run_due(kit) == []
    assert len(messages_of(kit, schedule.id)) == 3


def test_daily_at_nine_in_sao_paulo_is_noon_utc(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert schedule.next_run_at == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert upcoming(schedule, 3) == [
        dt.datetime(2024, 3, day, 12, 0, tzinfo=UTC) for day in (1, 2, 3)
    ]
    prefixed = add_schedule(kit, "bom-dia-2", REQUEST,
                            rrule="RRULE:FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert prefixed.next_run_at == schedule.next_run_at
    assert prefixed.rrule == "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"


def test_first_run_is_tomorrow_when_todays_time_has_passed(kit: SmsKit, clock: Clock) -> None:
    clock.now = dt.datetime(2024, 3, 1, 13, 0, tzinfo=UTC)  # 10:00 in São Paulo
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert schedule.next_run_at == dt.datetime(2024, 3, 2, 12, 0, tzinfo=UTC)


def test_weekly_business_days_with_dtstart_in_the_future(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "semana", REQUEST,
                            rrule="FREQ=WEEKLY;BYDAY=MO,WE,FR;BYHOUR=8;BYMINUTE=30",
                            dtstart=dt.datetime(2024, 3, 10, 0, 0))  # a Sunday, local
    days = [d.astimezone(SP) for d in upcoming(schedule, 4)]
    assert [(d.day, d.hour, d.minute) for d in days] == [
        (11, 8, 30), (13, 8, 30), (15, 8, 30), (18, 8, 30)
    ]


def test_new_york_rule_keeps_nine_local_across_both_dst_changes(kit: SmsKit,
                                                                clock: Clock) -> None:
    schedule = add_schedule(kit, "ny", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0",
                            tz="America/New_York")
    march = upcoming(schedule, 12)  # 2024-03-10: clocks go forward
    assert {d.astimezone(NY).hour for d in march} == {9}
    assert march[8] == dt.datetime(2024, 3, 9, 14, 0, tzinfo=UTC)  # EST, -05:00
    assert march[9] == dt.datetime(2024, 3, 10, 13, 0, tzinfo=UTC)  # EDT, -04:00

    nov = upcoming(schedule, 3, after=dt.datetime(2024, 11, 2, 14, 0, tzinfo=UTC))
    assert nov == [dt.datetime(2024, 11, 3, 14, 0, tzinfo=UTC),  # clocks went back: EST
                   dt.datetime(2024, 11, 4, 14, 0, tzinfo=UTC),
                   dt.datetime(2024, 11, 5, 14, 0, tzinfo=UTC)]


def test_times_skipped_or_repeated_by_dst_run_exactly_once(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "madrugada", REQUEST, rrule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
                            tz="America/New_York")
    # 02:30 does not exist on 2024-03-10: it runs once, an hour later on the wall clock.
    gap = upcoming(schedule, 3, after=dt.datetime(2024, 3, 9, 8, 0, tzinfo=UTC))
    assert gap == [dt.datetime(2024, 3, 10, 7, 30, tzinfo=UTC),
                   dt.datetime(2024, 3, 11, 6, 30, tzinfo=UTC),
                   dt.datetime(2024, 3, 12, 6, 30, tzinfo=UTC)]
    assert gap[0].astimezone(NY).hour == 3

    repeated = add_schedule(kit, "uma-e-meia", REQUEST, rrule="FREQ=DAILY;BYHOUR=1;BYMINUTE=30",
                            tz="America/New_York")
    # 01:30 happens twice on 2024-11-03: it runs once, at the first.
    fall = upcoming(repeated, 2, after=dt.datetime(2024, 11, 3, 0, 0, tzinfo=UTC))
    assert fall == [dt.datetime(2024, 11, 3, 5, 30, tzinfo=UTC),
                    dt.datetime(2024, 11, 4, 6, 30, tzinfo=UTC)]


@pytest.mark.parametrize(("tz", "rule", "dtstart", "expected"), [
    # New York, 2024-03-10: 02:00 becomes 03:00.
    ("America/New_York", "FREQ=DAILY", dt.datetime(2024, 3, 10, 2, 30),
     ["03-10 03:30", "03-11 02:30", "03-12 02:30", "03-13 02:30"]),
    ("America/New_York", "FREQ=WEEKLY", dt.datetime(2024, 3, 10, 2, 30),
     ["03-10 03:30", "03-17 02:30", "03-24 02:30", "03-31 02:30"]),
    ("America/New_York", "FREQ=DAILY;BYHOUR=2", dt.datetime(2024, 3, 10, 2, 30),
     ["03-10 03:30", "03-11 02:30", "03-12 02:30", "03-13 02:30"]),
    # São Paulo, 2024-11-03 had no DST any more; 2018-11-04 did: 00:00 became 01:00.
    ("America/Sao_Paulo", "FREQ=DAILY", dt.datetime(2018, 11, 4, 0, 30),
     ["11-04 01:30", "11-05 00:30", "11-06 00:30", "11-07 00:30"]),
    # Lord Howe Island, 2024-10-06: 02:00 becomes 02:30 (a half-hour jump).
    ("Australia/Lord_Howe", "FREQ=DAILY", dt.datetime(2024, 10, 6, 2, 10),
     ["10-06 02:40", "10-07 02:10", "10-08 02:10", "10-09 02:10"]),
])
def test_a_start_the_clocks_jump_over_keeps_its_wall_time_from_the_next_day(
    kit: SmsKit, clock: Clock, tz: str, rule: str, dtstart: dt.datetime, expected: List[str]
) -> None:
    clock.now = dtstart.replace(tzinfo=UTC) - dt.timedelta(days=10)
    schedule = add_schedule(kit, "madrugada", REQUEST, rrule=rule, tz=tz, dtstart=dtstart)
    wall = [d.astimezone(zone(tz)).strftime("%m-%d %H:%M") for d in upcoming(schedule, 4)]
    assert wall == expected
    # The stored rule names the time of day given; the stored start is where it landed.
    assert schedule.rrule is not None and "BYMINUTE=" in schedule.rrule
    assert schedule.next_run_at == schedule.dtstart
    [run] = run_due(kit, schedule.next_run_at)
    assert run.won and run.occurrence == schedule.next_run_at
    assert run.next_run_at is not None and run.next_run_at.astimezone(
        zone(tz)).strftime("%m-%d %H:%M") == expected[1]


def test_a_start_the_clocks_jump_over_is_refused_for_a_rule_within_the_day(kit: SmsKit) -> None:
    with pytest.raises(ValidationError, match=r"dtstart=2024-03-10T02:30:00 does not exist in "
                                              r"America/New_York .*\(e\.g\. 2024-03-10T03:30"):
        add_schedule(kit, "x", REQUEST, rrule="FREQ=HOURLY;INTERVAL=2", tz="America/New_York",
                     dtstart=dt.datetime(2024, 3, 10, 2, 30))
    assert kit.store.list_schedules() == []


def test_aware_and_naive_moments(kit: SmsKit) -> None:
    aware = add_schedule(kit, "a", REQUEST, at=dt.datetime(2024, 3, 2, 12, 0, tzinfo=UTC))
    naive = add_schedule(kit, "b", REQUEST, at=dt.datetime(2024, 3, 2, 9, 0))
    assert aware.next_run_at == naive.next_run_at == dt.datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
    assert next_occurrence(naive, dt.datetime(2024, 3, 1, tzinfo=UTC)) == naive.next_run_at
    assert next_occurrence(naive, dt.datetime(2024, 3, 2, 12, 0, tzinfo=UTC)) is None


def test_utc_until_is_honoured(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "ate", REQUEST,
                            rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0;UNTIL=20240303T120000Z")
    assert upcoming(schedule, 10) == [
        dt.datetime(2024, 3, day, 12, 0, tzinfo=UTC) for day in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"rrule": "FREQ=DAILYX"}, ValidationError, "invalid rrule 'FREQ=DAILYX'"),
        ({"rrule": "garbage"}, ValidationError, "invalid rrule 'garbage'"),
        ({"rrule": "FREQ=DAILY;BYHOUR=25"}, ValidationError, "invalid rrule"),
        ({"rrule": "FREQ=SECONDLY"}, ValidationError, "SECONDLY"),
        ({"rrule": "DTSTART:20240101T090000\nRRULE:FREQ=DAILY"}, ValidationError, "dtstart"),
        ({"rrule": "FREQ=DAILY;COUNT=2", "dtstart": dt.datetime(2023, 1, 1, 9, 0)},
         ValidationError, "has no occurrence after"),
        ({"rrule": "FREQ=DAILY;UNTIL=20240101T000000Z"}, ValidationError, "no occurrence"),
        # "até 31/12": a date alone would be read as 00:00 and drop the last day's send
        ({"rrule": "FREQ=DAILY;BYHOUR=10;BYMINUTE=0;UNTIL=20241231"}, ValidationError,
         "UNTIL=20241231T235959"),
        ({"rrule": "FREQ=DAILY", "tz": "Mars/Olympus_Mons"}, ValidationError,
         "unknown time zone 'Mars/Olympus_Mons'"),
        ({"at": dt.datetime(2024, 2, 29, 9, 0)}, ValidationError, "is in the past"),
        ({"at": dt.datetime(2024, 3, 2, 9, 0), "rrule": "FREQ=DAILY"}, ValidationError,
         "not both"),
        ({}, ValidationError, "needs at="),
        ({"at": dt.datetime(2024, 3, 2, 9, 0), "dtstart": dt.datetime(2024, 3, 2)},
         ValidationError, "dtstart= only applies"),
    ],
)
def test_bad_timing_is_refused_and_nothing_stored(kit: SmsKit, kwargs: dict, error: type,
                                                  words: str) -> None:
    with pytest.raises(error) as info:
        add_schedule(kit, "x", REQUEST, **kwargs)
    assert words in str(info.value)
    assert kit.store.list_schedules() == []


@pytest.mark.parametrize(
    ("request_", "error", "words"),
    [
        ({"recipients": ["11987654321"]}, ValidationError, "needs 'text' and 'recipients'"),
        ({"text": "  ", "recipients": ["11987654321"]}, ValidationError, "text must be"),
        ({"text": "oi", "recipients": []}, ValidationError, "recipients is empty"),
        ({"text": "oi", "recipients": "11987654321"}, ValidationError, "must be a list"),
        ({"text": "oi", "recipients": [{"nome": "Ana"}]}, ValidationError,
         "recipient #0 has no 'phone'"),
        ({"text": "oi", "recipients": ["11987654321", "123"]}, InvalidPhoneError, "'123'"),
        ({"text": "oi {{ nome", "recipients": ["11987654321"]}, TemplateError, ""),
        ({"text": "oi", "recipients": ["11987654321"], "variables": {"d": dt.date(2024, 1, 1)}},
         ValidationError, "not JSON-serialisable"),
        ({"text": "oi", "recipients": ["11987654321"], "tags": "vip"}, ValidationError,
         "tags must be a list"),
        ({"text": "oi", "recipients": ["11987654321"], "when": "amanhã"}, ValidationError,
         "unknown key(s) when"),
    ],
)
def test_bad_request_is_refused_when_the_schedule_is_created(
    kit: SmsKit, request_: dict, error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        add_schedule(kit, "x", request_, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert words in str(info.value)
    assert kit.store.list_schedules() == []


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        # `smskit schedule add --text "Bom dia {{ nome }}!" --to ...` without --var nome=...
        ({"text": "Bom dia {{ nome }}!", "recipients": ["11987654321"]},
         "'nome' but recipient 11987654321 has no value for it"),
        ({"text": "Olá {{ nome }}, boleto de {{ valor }}.", "variables": {"valor": " "},
          "recipients": [{"phone": "11987654321", "nome": "Ana"}]},
         "'valor' but recipient 11987654321 has no value for it"),
        # one recipient of three without the value would be rejected at every occurrence
        ({"text": "Olá {{ nome }}, boleto de {{ valor }}.",
          "recipients": [{"phone": "11987654321", "nome": "Ana", "valor": "R$ 1"},
                         {"phone": "21998765432", "nome": "Bia"},
                         {"phone": "31987651234", "nome": "Caio", "valor": "R$ 2"}]},
         "'valor' but recipient 21998765432 has no value for it"),
    ],
)
def test_a_template_variable_a_recipient_lacks_is_refused_when_the_schedule_is_created(
    kit: SmsKit, request_: dict, words: str
) -> None:
    with pytest.raises(ValidationError) as info:
        add_schedule(kit, "x", request_, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert words in str(info.value)
    assert "default(" in str(info.value)  # and says how to fix it
    assert kit.store.list_schedules() == []
    # a default, or the value for everyone, is enough
    fixed = {**request_, "text": request_["text"].replace("}}", '| default("cliente") }}')}
    assert add_schedule(kit, "y", fixed, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0").id


class Company:
    """A plugin giving every message the variable ``empresa``."""

    @hookimpl
    def prepare_message(self, message: Message, context: Any) -> Any:
        return {"empresa": "ACME"}


def test_a_variable_a_plugin_adds_counts_when_the_schedule_is_created(kit: SmsKit) -> None:
    request = {"text": "{{ empresa }}: Olá {{ nome }}", "recipients": [
        {"phone": "11987654321", "nome": "Ana"}]}
    with pytest.raises(ValidationError, match="'empresa'"):
        add_schedule(kit, "x", request, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    kit.plugins.register(Company(), name="empresa")
    schedule = add_schedule(kit, "x", request, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    [run] = run_due(kit, dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC))
    assert (run.created, run.rejected) == (1, 0)
    assert [m.body for m in messages_of(kit, schedule.id)] == ["ACME: Olá Ana"]


def test_bad_name_is_refused(kit: SmsKit) -> None:
    with pytest.raises(ValidationError, match="schedule name"):
        add_schedule(kit, " ", REQUEST, rrule="FREQ=DAILY")


def test_send_request_round_trips() -> None:
    request = SendRequest.from_dict(dict(REQUEST, variables={"empresa": "ACME"},
                                         provider="loopback"))
    again = SendRequest.from_dict(json.loads(json.dumps(request.to_dict())))
    assert again == request
    assert again.recipients[0] == {"phone": "(11) 98765-4321", "nome": "Ana"}
    assert SendRequest(text="oi", recipients=[11987654321]).recipients == ("11987654321",)


def test_a_request_takes_recipients_or_an_audience() -> None:
    tags = {"type": "tags", "tags": ["vip"]}
    request = SendRequest(text="oi", audience=tags)
    assert request.recipients == ()
    assert SendRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    with pytest.raises(ValidationError, match="not both"):
        SendRequest(text="oi", recipients=["11987654321"], audience=tags)
    with pytest.raises(ValidationError, match="recipients is empty"):
        SendRequest(text="oi")
    with pytest.raises(ValidationError, match="audience must be a mapping"):
        SendRequest(text="oi", audience={"tags": ["vip"]})
    assert "audience" not in SendRequest(text="oi", recipients=["1"]).to_dict()


def _contacts(store: Store, *people: tuple) -> None:
    from smskit.store.outreach import Contact

    store.save_contacts([Contact(phone=phone, name=name, tags=tags)  # type: ignore[attr-defined]
                         for phone, name, tags in people])


def test_an_audience_is_read_afresh_at_every_occurrence(kit: SmsKit, store: Store) -> None:
    _contacts(store, ("+5511987654321", "Ana", ("vip",)), ("+5521998765432", "Bia", ("sp",)))
    schedule = add_schedule(kit, "vip-semanal", {"text": "Oi {{ name }}",
                                                 "audience": {"type": "tags", "tags": ["vip"]}},
                            rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    [first] = run_due(kit, dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC))
    assert (first.won, first.created) == (True, 1)
    _contacts(store, ("+5531987651234", "Caio", ("vip",)))  # tagged after the first run
    [second] = run_due(kit, dt.datetime(2024, 3, 2, 12, 0, 30, tzinfo=UTC))
    assert (second.won, second.created) == (True, 2)
    sent = sorted((m.phone, m.body) for m in messages_of(kit, schedule.id))
    assert sent == [("+5511987654321", "Oi Ana"), ("+5511987654321", "Oi Ana"),
                    ("+5531987651234", "Oi Caio")]


def test_an_audience_occurrence_run_twice_stores_each_person_once(
    kit: SmsKit, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _contacts(store, *[(f"+55119876543{i:02d}", f"P{i}", ("vip",)) for i in range(5)])
    monkeypatch.setattr("smskit.outreach.scheduler.AUDIENCE_PAGE", 2)  # three pages
    schedule = add_schedule(kit, "vip", {"text": "Oi", "audience": {"type": "tags",
                                                                    "tags": ["vip"]}},
                            rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    now = dt.datetime(2024, 3, 1, 12, 1, tzinfo=UTC)
    with monkeypatch.context() as patch:
        patch.setattr(kit.store, "advance_schedule",
                      lambda *a, **k: (_ for _ in ()).throw(StoreError("power cut")))
        with pytest.raises(StoreError):
            run_due(kit, now)
    [rerun] = run_due(kit, now)
    assert (rerun.created, rerun.duplicates) == (0, 5)
    assert len(messages_of(kit, schedule.id)) == 5


def test_an_audience_is_checked_when_the_schedule_is_created(kit: SmsKit, store: Store) -> None:
    _contacts(store, ("+5511987654321", "Ana", ("vip",)))
    with pytest.raises(ValidationError, match="unknown audience type"):
        add_schedule(kit, "x", {"text": "oi", "audience": {"type": "nope"}}, rrule="FREQ=DAILY")
    with pytest.raises(ValidationError, match="'fatura'"):
        add_schedule(kit, "x", {"text": "vence {{ fatura }}",
                                "audience": {"type": "tags", "tags": ["vip"]}},
                     rrule="FREQ=DAILY")
    assert kit.store.list_schedules() == []


class Backup:
    """A plugin registering a second gateway, ``backup`` (a loopback)."""

    @hookimpl
    def register_providers(self, register: Callable[[str, Any], None]) -> None:
        register("backup", lambda settings: LoopbackProvider("backup"))


def test_an_unknown_provider_is_refused_when_the_schedule_is_created(kit: SmsKit) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown provider 'kolmyea' \(known: loopback"):
        add_schedule(kit, "typo", {**REQUEST, "provider": "kolmyea"},
                     rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    with pytest.raises(ConfigurationError, match="'kolmyea'"):
        add_schedule(kit, "typo", {**REQUEST, "provider": "kolmyea"},
                     at=dt.datetime(2024, 3, 2, 9, 0))
    assert kit.store.list_schedules() == []
    assert kit.store.list_messages(limit=10) == []


def test_a_schedule_whose_provider_was_removed_fails_each_run_and_stores_nothing(
    store: Store, clock: Clock
) -> None:
    settings = Settings(provider="loopback", database_url="memory://")
    plugins = Plugins(settings, entry_points=False)
    plugins.register(Backup(), name="backup")
    before = SmsKit(settings, store=store, provider=LoopbackProvider(), plugins=plugins,
                    clock=clock)
    schedule = add_schedule(before, "reserva", {**REQUEST, "provider": "backup"},
                            rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    after = make_kit(store, clock)  # the configuration no longer has "backup"
    worker = Worker(after, poll_replies=False)
    for day in (1, 2):
        clock.now = dt.datetime(2024, 3, day, 12, 0, 30, tzinfo=UTC)
        report = worker.run_once()  # the worker goes on (other schedules, dispatch)
        [run] = report.schedules
        assert not run.won and "unknown provider 'backup'" in (run.error or "")
        assert "error: unknown provider 'backup'" in report.describe()
    assert messages_of(after, schedule.id) == []
    stored = store.get_schedule(schedule.id)
    assert stored is not None and (stored.runs, stored.next_run_at) == (0, schedule.next_run_at)

    [run] = run_due(before, clock.now)  # the provider is back: the latest occurrence runs
    assert run.won and run.created == 3 and run.skipped == 1
    assert {m.provider for m in messages_of(before, schedule.id)} == {"backup"}


# -- running ------------------------------------------------------------------------------------
def test_run_due_twice_at_the_same_moment_materialises_once(kit: SmsKit, clock: Clock) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    now = dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)
    [run] = run_due(kit, now)
    assert (run.won, run.created, run.duplicates, run.skipped) == (True, 3, 0, 0)
    assert run.occurrence == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert run.next_run_at == dt.datetime(2024, 3, 2, 12, 0, tzinfo=UTC)
    assert run_due(kit, now) == []
    assert len(messages_of(kit, schedule.id)) == 3

    [tomorrow] = run_due(kit, now + dt.timedelta(days=1))
    assert tomorrow.won and tomorrow.created == 3
    keys = [m.idempotency_key for m in messages_of(kit, schedule.id)]
    assert len(keys) == len(set(keys)) == 6
    assert f"schedule:{schedule.id}:2024-03-02T12:00:00+00:00:+5511987654321" in keys


def test_materialised_messages_are_dispatched_once(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    run_due(kit, dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC))
    report = kit.dispatch()
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    assert report.sent == 3
    assert set(provider.accepted_counts().values()) == {1}
    assert {m.state for m in messages_of(kit, schedule.id)} == {State.SENT}


def test_catch_up_latest_sends_only_the_most_recent_missed_occurrence(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    # The worker was down from before 1 March 09:00 until 5 March 10:00 (local).
    [run] = run_due(kit, dt.datetime(2024, 3, 5, 13, 0, tzinfo=UTC))
    assert run.won and run.skipped == 4 and run.created == 3
    assert run.occurrence == dt.datetime(2024, 3, 5, 12, 0, tzinfo=UTC)
    assert run.next_run_at == dt.datetime(2024, 3, 6, 12, 0, tzinfo=UTC)
    keys = {m.idempotency_key for m in messages_of(kit, schedule.id)}
    assert len(keys) == 3
    assert all(":2024-03-05T12:00:00+00:00:" in str(k) for k in keys)


def test_catch_up_all_sends_every_missed_occurrence_in_order(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    runs = run_due(kit, dt.datetime(2024, 3, 3, 13, 0, tzinfo=UTC), catch_up="all")
    assert [r.occurrence.day for r in runs] == [1, 2, 3]
    assert all(r.won and r.created == 3 and r.skipped == 0 for r in runs)
    assert len(messages_of(kit, schedule.id)) == 9
    stored = kit.store.get_schedule(schedule.id)
    assert stored is not None and stored.runs == 3
    with pytest.raises(ValidationError, match="catch_up must be one of"):
        run_due(kit, catch_up="everything")


def test_crash_between_materialise_and_advance_creates_no_duplicates(
    kit: SmsKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    now = dt.datetime(2024, 3, 1, 12, 1, tzinfo=UTC)

    def crash(*args: object, **kwargs: object) -> bool:
        raise StoreError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(kit.store, "advance_schedule", crash)
        with pytest.raises(StoreError, match="power cut"):
            run_due(kit, now)
    assert len(messages_of(kit, schedule.id)) == 3
    stored = kit.store.get_schedule(schedule.id)
    assert stored is not None and stored.runs == 0  # the run did not count

    [rerun] = run_due(kit, now + dt.timedelta(minutes=1))
    assert (rerun.won, rerun.created, rerun.duplicates) == (True, 0, 3)
    messages = messages_of(kit, schedule.id)
    assert len(messages) == 3
    assert len({m.idempotency_key for m in messages}) == 3


def test_run_now_sends_once_and_leaves_the_recurrence_alone(kit: SmsKit) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    now = dt.datetime(2024, 3, 1, 10, 30, 12, 345, tzinfo=UTC)
    run = run_now(kit, schedule.id, now)
    assert (run.won, run.created, run.occurrence) == (True, 3, now.replace(microsecond=0))
    assert run_now(kit, schedule.id, now).created == 0  # a double click stores nothing new
    stored = kit.store.get_schedule(schedule.id)
    assert stored is not None and stored.next_run_at == schedule.next_run_at
    assert stored.runs == 0
    assert {m.state for m in messages_of(kit, schedule.id)} == {State.OUTGOING}
    with pytest.raises(NotFoundError):
        run_now(kit, "nope")


def test_a_racing_worker_that_loses_adds_nothing(
    kit: SmsKit, store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    other = make_kit(store, clock)
    now = dt.datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC)
    stale = store.due_schedules(now)  # the other worker read the schedule before we advanced it
    [first] = run_due(kit, now)
    with monkeypatch.context() as patch:
        patch.setattr(other.store, "due_schedules", lambda moment: stale)
        [second] = run_due(other, now)
    assert first.won and not second.won
    assert (second.created, second.duplicates) == (0, 3)
    assert len(messages_of(kit, schedule.id)) == 3
    stored = store.get_schedule(schedule.id)
    assert stored is not None and stored.runs == 1


def test_a_schedule_that_cannot_run_is_reported_and_kept(kit: SmsKit, clock: Clock) -> None:
    broken = Schedule(id="broken", name="quebrado", request={"text": "oi"},
                      next_run_at=dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
                      created_at=clock.now)
    kit.store.add_schedule(broken)
    [run] = run_due(kit, dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    assert not run.won and run.error is not None and "recipients" in run.error
    stored = kit.store.get_schedule("broken")
    assert stored is not None and stored.next_run_at == broken.next_run_at and stored.runs == 0


class Odoo:
    """An Odoo behind the ``odoo`` audience: down (the connection refused) until ``up``."""

    def __init__(self) -> None:
        self.up = False

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        return [{"id": 7, "mobile": "+5531987651234", "name": "Carla"}]

    @hookimpl
    def register_audience_sources(self, register: Callable[[str, Any], None]) -> None:
        from smskit_odoo.audience import OdooDomainSource

        register("odoo", OdooDomainSource(self))


@pytest.mark.parametrize("odoo", ["down", "not configured"])
def test_a_schedule_whose_audience_cannot_be_read_holds_no_one_else_up(
    store: Store, clock: Clock, odoo: str
) -> None:
    import smskit_odoo.plugin

    settings = Settings(provider="loopback", database_url="memory://")
    plugins = Plugins(settings, entry_points=False)
    source = Odoo()
    if odoo == "down":  # Odoo not answering: retried every cycle
        plugins.register(source, name="odoo-audience")
    else:  # the Odoo plugin without an Odoo connection: an error until configured
        plugins.register(smskit_odoo.plugin, name="odoo")
    kit = SmsKit(settings, store=store, provider=LoopbackProvider(), plugins=plugins,
                 clock=clock)
    partners = add_schedule(kit, "clientes", {"text": "Oi {{ name }}", "audience": {
        "type": "odoo", "domain": [["customer_rank", ">", 0]]}},
        rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    listed = add_schedule(kit, "lista", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    clock.now = dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)
    report = Worker(kit, poll_replies=False).run_once()  # neither raises nor stops the worker

    runs = {run.name: run for run in report.schedules}
    assert not runs["clientes"].won and runs["clientes"].error
    assert (runs["lista"].won, runs["lista"].created) == (True, 3)
    assert report.dispatched["loopback"].sent == 3  # the rest of the cycle went on
    assert {m.state for m in messages_of(kit, listed.id)} == {State.SENT}
    kept = store.get_schedule(partners.id)
    assert kept is not None and (kept.runs, kept.next_run_at) == (0, partners.next_run_at)
    assert messages_of(kit, partners.id) == []
    if odoo == "down":
        source.up = True  # Odoo is back: the occurrence runs on the next cycle
        [run] = run_due(kit, clock.now + dt.timedelta(seconds=30))
        assert (run.won, run.created) == (True, 1)


# -- two processes on one SQLite file ----------------------------------------------------------
RACER = textwrap.dedent(
    """
    import datetime as dt, json, pathlib, sys, time
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.plugins import Plugins
    from smskit.outreach.scheduler import run_due
    from smskit.store.sql import SqlStore
    from smskit.providers.loopback import LoopbackProvider

    db, sync, me, other, rounds = sys.argv[1], pathlib.Path(sys.argv[2]), *sys.argv[3:6]
    settings = Settings(provider="loopback")
    kit = SmsKit(settings, store=SqlStore("sqlite:///" + db), provider=LoopbackProvider(),
                 plugins=Plugins(settings, entry_points=False))
    base = dt.datetime(2024, 3, 1, 12, 0, 30, tzinfo=dt.timezone.utc)
    for i in range(int(rounds)):
        (sync / f"{i}-{me}").touch()
        deadline = time.monotonic() + 60
        while not (sync / f"{i}-{other}").exists():  # a barrier: both call run_due together
            if time.monotonic() > deadline:
                sys.exit("the other racer never arrived")
            time.sleep(0.0005)
        for run in run_due(kit, base + dt.timedelta(days=i)):
            print(json.dumps({"occurrence": run.occurrence.isoformat(), "won": run.won,
                              "created": run.created, "error": run.error}), flush=True)
    kit.close()
    """
)


def test_two_processes_racing_on_sqlite_materialise_each_occurrence_once(
    tmp_path: Path, clock: Clock
) -> None:
    from smskit.store.sql import SqlStore

    db = tmp_path / "race.db"
    store = SqlStore(f"sqlite:///{db}")
    kit = make_kit(store, clock)
    schedule = add_schedule(kit, "bom-dia", REQUEST, rrule="FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    script = tmp_path / "racer.py"
    script.write_text(RACER, encoding="utf-8")
    sync = tmp_path / "sync"
    sync.mkdir()
    rounds = 12
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(sync), me, other, str(rounds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    for racer, (_, err) in zip(racers, outputs):
        assert racer.returncode == 0, err

    runs = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert not [r for r in runs if r["error"]]
    wins = collections.Counter(r["occurrence"] for r in runs if r["won"])
    expected = {(dt.datetime(2024, 3, 1, 12, tzinfo=UTC) + dt.timedelta(days=i)).isoformat()
                for i in range(rounds)}
    assert set(wins) == expected
    assert set(wins.values()) == {1}  # the compare-and-set was won once per occurrence
    created = collections.Counter()
    for r in runs:
        created[r["occurrence"]] += r["created"]
    assert set(created.values()) == {3}  # both raced; only one message per recipient stored

    messages = messages_of(kit, schedule.id)
    assert len(messages) == 3 * rounds
    per_key = collections.Counter(m.idempotency_key for m in messages)
    assert set(per_key.values()) == {1}
    stored = store.get_schedule(schedule.id)
    assert stored is not None and stored.runs == rounds
    store.close()

