"""Campaigns (CSV, tags, Odoo domain as data, a plugin's audience), resumable and pausable with
live totals; contacts and per-recipient do-not-disturb. Every test runs on the memory store and
on a SQLite file."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import attrs
import pytest

from cli_helpers import cli, cli_env  # noqa: F401
from smskit.config import Settings
from smskit.errors import ConfigurationError, ProviderError, ValidationError
from smskit.hookspecs import hookimpl
from smskit.kit import SmsKit
from smskit.models import InboundMessage, Message, State
from smskit.outreach.audience import Audience, AudienceSource, Page
from smskit.outreach.campaigns import Campaigns
from smskit.outreach.contacts import import_contacts, make_contact
from smskit.plugins import Plugins
from smskit.providers.loopback import LoopbackProvider
from smskit.store.memory import MemoryStore
from smskit.store.outreach import Campaign, OutreachStore
from smskit.timeutil import zone
from smskit.worker import Worker
from smskit_odoo.audience import OdooDomainSource, validate_domain

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")
NOW = dt.datetime(2024, 5, 10, 15, 0, tzinfo=UTC)  # a Friday, 12:00 in São Paulo


class Clock:
    """The kit's clock, moved by hand."""

    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Crash(BaseException):
    """A process dying mid-step (not an error the code may catch)."""


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'campaigns.db'}")
    yield sql
    sql.close()


def make_kit(store: Any, clock: Optional[Clock] = None,
             provider: Optional[LoopbackProvider] = None, **values: str) -> SmsKit:
    settings = Settings.load(environ={}, provider="loopback", database_url="memory://",
                             **values)
    return SmsKit(settings, store=store, provider=provider or LoopbackProvider(max_batch=100),
                  plugins=Plugins(settings, entry_points=False), clock=clock or Clock())


def odoo_kit(store: Any) -> SmsKit:
    """A kit with the Odoo plugin (its ``odoo`` audience) and no Odoo configured."""
    import smskit_odoo.plugin

    kit = make_kit(store)
    kit.plugins.register(smskit_odoo.plugin, name="odoo")
    return kit


def phone(i: int) -> str:
    return f"+55119{10_000_000 + i:08d}"


def seed_contacts(store: OutreachStore, n: int, tags: Sequence[str] = ("vip",)) -> List[str]:
    phones = [phone(i) for i in range(n)]
    store.save_contacts(make_contact(p, name=f"Cliente {i}", tags=tags,
                                     variables={"cidade": "Recife"})
                        for i, p in enumerate(phones))
    return phones


def campaign_messages(kit: SmsKit, campaign_id: str) -> List[Message]:
    return kit.store.list_messages(campaign_id=campaign_id, limit=100_000)


def run_until_done(worker: Worker, campaigns: Campaigns, campaign_id: str,
                   cycles: int = 20) -> None:
    for _ in range(cycles):
        worker.run_once()
        if campaigns.get(campaign_id).status == "done":
            return
    raise AssertionError(f"campaign {campaign_id} not done after {cycles} cycles")


def loopback(kit: SmsKit) -> LoopbackProvider:
    provider = kit.provider()
    assert isinstance(provider, LoopbackProvider)
    return provider


def assert_sent_once(kit: SmsKit, messages: Sequence[Message]) -> None:
    counts = loopback(kit).accepted_counts()
    assert set(counts.values()) == {1}
    assert {m.id for m in messages if m.sent_at is not None} <= set(counts)


# -- audiences ----------------------------------------------------------------------------------
def test_tags_campaign_is_stored_in_pages_and_sent_once_by_the_worker(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 130, tags=("vip",))
    seed_contacts_other = [phone(1000 + i) for i in range(20)]
    store.save_contacts(make_contact(p, tags=["outros"]) for p in seed_contacts_other)
    campaigns = Campaigns(kit, chunk_size=50, max_chunks=2)
    created = campaigns.create("vip-maio", "Olá {{ name }} de {{ cidade }}!",
                               {"type": "tags", "tags": ["vip"]})
    assert created.status == "draft"
    assert campaigns.start(created.id).status == "running"
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)

    first = worker.run_once()
    (step,) = first.campaigns
    assert (step.chunks, step.created) == (2, 100)  # bounded work per cycle
    assert first.sent == 100
    assert campaigns.get(created.id).status == "running"
    run_until_done(worker, campaigns, created.id)

    messages = campaign_messages(kit, created.id)
    assert len(messages) == 130 and {m.state for m in messages} == {State.SENT}
    assert {m.phone for m in messages} == {phone(i) for i in range(130)}
    assert any(m.body == "Olá Cliente 7 de Recife!" for m in messages)
    assert_sent_once(kit, messages)
    status = campaigns.status(created.id)
    assert status.campaign.status == "done" and status.campaign.finished_at is not None
    assert (status.totals.total, status.totals.sent, status.totals.queued) == (130, 130, 0)
    assert status.totals.cost == Decimal("130") * Decimal("0.08")
    assert worker.run_once().empty


class Backup:
    """A plugin registering a second gateway, ``backup`` (a loopback)."""

    @hookimpl
    def register_providers(self, register: Any) -> None:
        register("backup", lambda settings: LoopbackProvider("backup"))


def test_an_unknown_provider_is_refused_when_the_campaign_is_created(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 2)
    campaigns = Campaigns(kit)
    with pytest.raises(ConfigurationError, match=r"unknown provider 'kolmyea' \(known: loopback"):
        campaigns.create("typo", "Oi", {"type": "tags", "tags": ["vip"]}, provider="kolmyea")
    assert campaigns.list_campaigns() == [] and kit.store.list_messages(limit=10) == []


def test_a_campaign_whose_provider_was_removed_is_paused_and_stores_nothing(store: Any) -> None:
    seed_contacts(store, 3)
    kit = make_kit(store)
    kit.plugins.register(Backup(), name="backup")
    before = Campaigns(kit)
    audience = {"type": "tags", "tags": ["vip"]}
    draft = before.create("rascunho", "Oi", audience, provider="backup")
    running = before.create("em curso", "Oi", audience, provider="backup")
    before.start(running.id)

    after_kit = make_kit(store)  # the configuration no longer has "backup"
    after = Campaigns(after_kit)
    with pytest.raises(ConfigurationError, match="unknown provider 'backup'"):
        after.start(draft.id)
    assert after.get(draft.id).status == "draft"
    report = Worker(after_kit, poll_replies=False, campaigns=after).run_once()
    [step] = report.campaigns
    assert "unknown provider 'backup'" in (step.error or "") and step.created == 0
    paused = after.get(running.id)
    assert paused.status == "paused" and "unknown provider 'backup'" in (paused.last_error or "")
    assert paused.cursor is None and campaign_messages(after_kit, running.id) == []
    with pytest.raises(ConfigurationError, match="unknown provider 'backup'"):
        after.resume(running.id)
    assert after.get(running.id).status == "paused"

    before.resume(running.id)  # the provider is back
    worker = Worker(kit, poll_replies=False, campaigns=before, providers=("loopback", "backup"))
    run_until_done(worker, before, running.id)
    assert {(m.provider, m.state) for m in campaign_messages(kit, running.id)} == {
        ("backup", State.SENT)}


def test_tag_match_all_takes_contacts_with_every_tag(store: Any) -> None:
    kit = make_kit(store)
    store.save_contacts([make_contact(phone(1), tags=["a"]),
                         make_contact(phone(2), tags=["a", "b"]),
                         make_contact(phone(3), tags=["b"]),
                         make_contact(phone(4), tags=["b", "a"])])
    campaigns = Campaigns(kit)
    both = campaigns.create("ab", "Oi", {"type": "tags", "tags": ["a", "b"], "match": "all"})
    either = campaigns.create("a|b", "Oi", {"type": "tags", "tags": ["a", "b"]})
    campaigns.start(both.id)
    campaigns.start(either.id)
    campaigns.advance()
    assert {m.phone for m in campaign_messages(kit, both.id)} == {phone(2), phone(4)}
    assert len(campaign_messages(kit, either.id)) == 4


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_campaign_reads_the_file_in_resumable_pages(store: Any, tmp_path: Path) -> None:
    kit = make_kit(store)
    rows = ["telefone;nome;obs"]
    rows += [f"119{10_000_000 + i:08d};Cliente {i};ok" for i in range(7)]
    rows.insert(3, '11910000001;"Duplicada; mesma";"linha\ncom quebra"')  # same phone again
    rows.insert(5, "12345;Inválido;x")
    path = write_csv(tmp_path / "lista.csv", "\n".join(rows) + "\n")
    campaigns = Campaigns(kit, chunk_size=2, max_chunks=1)
    created = campaigns.create("csv", "{{ nome }}: seu boleto vence hoje",
                               {"type": "csv", "path": str(path), "phone_column": "telefone"})
    campaigns.start(created.id)
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    cursors = []
    for _ in range(8):
        worker.run_once()
        cursors.append(campaigns.get(created.id).cursor)
    assert campaigns.get(created.id).status == "done"
    assert cursors[0] == f"2:{len(rows[0]) + len(rows[1]) + len(rows[2]) + 3}"
    messages = campaign_messages(kit, created.id)
    sent = sorted(m.phone for m in messages if m.state is State.SENT)
    assert sent == [phone(i) for i in range(7)]  # the duplicate row was not sent twice
    (rejected,) = [m for m in messages if m.state is State.REJECTED]
    assert rejected.error_code == "invalid_phone" and rejected.phone == "12345"
    bodies = {m.phone: m.body for m in messages}
    assert bodies[phone(0)] == "Cliente 0: seu boleto vence hoje"
    assert_sent_once(kit, messages)
    totals = campaigns.status(created.id).totals
    assert (totals.total, totals.sent, totals.rejected) == (8, 7, 1)


def test_a_csv_campaign_skips_the_empty_rows_of_an_excel_export(store: Any,
                                                                 tmp_path: Path) -> None:
    # rows Excel writes for cleared lines (";;") are no recipients, as send-bulk reads them
    kit = make_kit(store)
    path = write_csv(tmp_path / "lista.csv", "telefone;nome;obs\n11910000000;Ana;ok\n;;\n"
                     " ; ;\n11910000001;Bia;ok\n;;\n")
    campaigns = Campaigns(kit, chunk_size=2, max_chunks=5)
    created = campaigns.create("csv", "Oi {{ nome }}",
                               {"type": "csv", "path": str(path), "phone_column": "telefone"})
    campaigns.start(created.id)
    Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
    assert campaigns.get(created.id).status == "done"
    messages = campaign_messages(kit, created.id)
    assert sorted((m.phone, m.state) for m in messages) == [
        (phone(0), State.SENT), (phone(1), State.SENT)]
    totals = campaigns.status(created.id).totals
    assert (totals.total, totals.sent, totals.rejected) == (2, 2, 0)


def test_a_csv_file_changed_after_creation_is_refused(store: Any, tmp_path: Path) -> None:
    kit = make_kit(store)
    path = write_csv(tmp_path / "lista.csv", "phone\n11910000000\n")
    campaigns = Campaigns(kit)
    created = campaigns.create("csv", "Oi", {"type": "csv", "path": str(path)})
    write_csv(path, "phone\n11910000001\n")
    with pytest.raises(ValidationError, match="changed since the campaign was created"):
        campaigns.start(created.id)
    assert campaigns.get(created.id).status == "draft"
    assert kit.store.list_messages() == []
    with pytest.raises(ValidationError, match="no column 'telefone'"):
        campaigns.create("x", "Oi", {"type": "csv", "path": str(path),
                                     "phone_column": "telefone"})


class FakeOdoo:
    """A tiny stand-in for an Odoo adapter: ``execute(model, method, *args, **kwargs)`` over a
    list of records, understanding only the leaves these tests use."""

    def __init__(self, records: List[Dict[str, Any]]) -> None:
        self.records = records
        self.calls: List[Any] = []

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((model, method, args, kwargs))
        assert method == "search_read"
        (domain,) = args
        ops = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b}
        found = [r for r in self.records
                 if all(ops[op](r.get(field), value) for field, op, value in domain)]
        found.sort(key=lambda r: r["id"])
        return [{f: r.get(f, False) for f in kwargs["fields"]} for r in found][:kwargs["limit"]]


def test_odoo_audience_is_read_through_execute_with_the_domain_as_data(store: Any) -> None:
    kit = make_kit(store)
    records = [{"id": i, "name": f"Parceiro {i}", "mobile": f"119{10_000_000 + i:08d}",
                "city": "Recife" if i % 3 else "Olinda"} for i in range(1, 13)]
    records[3]["mobile"] = False  # no phone: skipped, counted
    odoo = FakeOdoo(records)
    campaigns = Campaigns(kit, sources={"odoo": OdooDomainSource(odoo)}, chunk_size=3,
                          max_chunks=10)
    created = campaigns.create("recife", "Oi {{ name }}", {
        "type": "odoo", "model": "res.partner", "domain": [["city", "=", "Recife"]],
        "phone_field": "mobile", "fields": ["name"]})
    campaigns.start(created.id)
    run_until_done(Worker(kit, poll_replies=False, campaigns=campaigns), campaigns, created.id)

    expected = {phone(r["id"]) for r in records if r["city"] == "Recife" and r["mobile"]}
    messages = campaign_messages(kit, created.id)
    assert {m.phone for m in messages} == expected
    assert campaigns.get(created.id).skipped == 1
    assert "Oi Parceiro 1" in {m.body for m in messages}
    model, method, args, kwargs = odoo.calls[1]
    assert (model, method) == ("res.partner", "search_read")
    assert args[0] == [["city", "=", "Recife"], ["id", ">", 4]]  # paged by id, data only
    assert kwargs == {"fields": ["mobile", "name", "id"], "order": "id asc", "limit": 3}


def test_an_odoo_campaign_without_a_connection_is_paused_with_the_reason(store: Any) -> None:
    kit = odoo_kit(store)
    campaigns = Campaigns(kit)
    created = campaigns.create("x", "Oi", {"type": "odoo", "domain": []})
    campaigns.start(created.id)
    report = Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
    assert "needs an Odoo connection" in (report.campaigns[0].error or "")
    paused = campaigns.get(created.id)
    assert paused.status == "paused" and "needs an Odoo connection" in (paused.last_error or "")


@pytest.mark.parametrize(("domain", "fragment"), [
    ("[('id', '>', 0)]", "not a string"),
    ([["id", "exec", 0]], "operator 'exec' is not allowed"),
    ([["id;drop", "=", 0]], "must be a field name"),
    (["|", ["id", "=", 1]], "'|' needs 2 operand(s)"),
    ([["id", "in", 3]], "'in' needs a list value"),
    ([["name", "=", {"$ne": 1}]], "a value must be a string"),
    (["&&", ["id", "=", 1]], "unknown logical operator"),
    ({"id": 1}, "must be a list"),
    ([["id", "="]], "expected [field, operator, value]"),
])
def test_domain_is_validated_as_data_and_never_evaluated(store: Any, domain: Any,
                                                         fragment: str) -> None:
    kit = odoo_kit(store)
    with pytest.raises(ValidationError) as caught:
        Campaigns(kit).create("bad", "Oi", {"type": "odoo", "domain": domain})
    assert fragment in str(caught.value)
    assert store.list_campaigns() == []


def test_a_valid_prefix_domain_is_kept_as_data() -> None:
    domain = ["|", ["city", "=", "Recife"], "!", ["city", "ilike", "olinda"],
              ["customer_rank", ">", 0], ["category_id", "in", [1, 2]]]
    assert validate_domain(domain) == domain
    assert validate_domain([]) == []


class ListAudience(Audience):
    """A third-party audience for the tests: phones given in the data."""

    def __init__(self, phones: Sequence[str]) -> None:
        self.phones = list(phones)

    def to_data(self) -> Dict[str, Any]:
        return {"type": "list", "phones": self.phones}

    def describe(self) -> str:
        return f"list of {len(self.phones)}"


class ListSource(AudienceSource[ListAudience]):
    """Reads ``{"type": "list", "phones": [...]}``, two phones a page, the cursor an index."""

    def __init__(self) -> None:
        self.kits: List[SmsKit] = []

    def parse(self, data: Mapping[str, Any]) -> ListAudience:
        phones = data.get("phones")
        if not isinstance(phones, list) or not phones:
            raise ValidationError("a list audience needs 'phones'")
        return ListAudience(phones)

    def read_page(self, kit: SmsKit, audience: ListAudience, cursor: Optional[str],
                  limit: int) -> Page:
        self.kits.append(kit)
        start = int(cursor or 0)
        end = min(start + min(limit, 2), len(audience.phones))
        return Page(recipients=[{"phone": p} for p in audience.phones[start:end]],
                    cursor=str(end), done=end >= len(audience.phones))


class ListPlugin:
    """A plugin that registers the ``list`` audience, as a third-party one would."""

    def __init__(self) -> None:
        self.source = ListSource()

    @hookimpl
    def register_audience_sources(self, register: Any) -> None:
        register("list", self.source)


def test_a_plugin_registers_an_audience_source_that_campaigns_read(store: Any) -> None:
    kit = make_kit(store)
    plugin = ListPlugin()
    kit.plugins.register(plugin, name="list-audience")
    campaigns = Campaigns(kit)
    assert sorted(campaigns.sources) == ["csv", "list", "tags"]
    created = campaigns.create("lista", "Oi", {"type": "list",
                                               "phones": [phone(1), phone(2), phone(3)]})
    assert created.audience == {"type": "list", "phones": [phone(1), phone(2), phone(3)]}
    assert campaigns.describe(created) == "list of 3"
    campaigns.start(created.id)
    run_until_done(Worker(kit, poll_replies=False, campaigns=campaigns), campaigns, created.id)
    assert {m.phone for m in campaign_messages(kit, created.id)} == {phone(1), phone(2),
                                                                     phone(3)}
    assert plugin.source.kits and all(k is kit for k in plugin.source.kits)  # given the kit
    with pytest.raises(ValidationError, match="needs 'phones'"):
        campaigns.create("vazia", "Oi", {"type": "list", "phones": []})


def test_an_audience_type_registered_twice_or_unknown_is_an_error(store: Any) -> None:
    kit = make_kit(store)
    kit.plugins.register(ListPlugin(), name="one")
    kit.plugins.register(ListPlugin(), name="two")
    with pytest.raises(ConfigurationError, match="'list' is registered by two plugins"):
        Campaigns(kit).create("x", "Oi", {"type": "list", "phones": [phone(1)]})
    campaigns = Campaigns(make_kit(store))
    with pytest.raises(ValidationError, match=r"unknown audience type 'odoo' \(known: csv, tags"):
        campaigns.create("x", "Oi", {"type": "odoo", "domain": []})


def test_campaigns_stored_before_the_rename_still_run(store: Any, tmp_path: Path) -> None:
    """Audience data as earlier releases stored it (the ``segment`` column) parses as is."""
    kit = make_kit(store)
    path = write_csv(tmp_path / "lista.csv", "phone\n11910000000\n11910000001\n")
    old = {"type": "csv", "path": str(path), "phone_column": "phone", "encoding": "utf-8-sig",
           "sha256": None, "size": None}
    store.add_campaign(Campaign(id="old-csv", name="antiga", template="Oi", audience=old,
                                status="running", created_at=NOW, updated_at=NOW))
    store.add_campaign(Campaign(id="old-odoo", name="odoo", template="Oi", audience={
        "type": "odoo", "domain": [["id", ">", 0]], "model": "res.partner",
        "phone_field": "mobile", "fields": ["name"]}, created_at=NOW, updated_at=NOW))
    campaigns = Campaigns(kit, sources={"odoo": OdooDomainSource(FakeOdoo([]))})
    run_until_done(Worker(kit, poll_replies=False, campaigns=campaigns), campaigns, "old-csv")
    assert {m.phone for m in campaign_messages(kit, "old-csv")} == {phone(0), phone(1)}
    assert campaigns.describe(campaigns.get("old-odoo")) == "odoo res.partner (1 term)"
    assert campaigns.describe(campaigns.get("old-csv")) == f"csv {path}"


# -- crash and pause ----------------------------------------------------------------------------
def test_a_crash_mid_materialisation_resumes_without_double_sends(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 100)
    campaigns = Campaigns(kit, chunk_size=40, max_chunks=1)
    created = campaigns.create("crash", "Oi {{ name }}", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    worker.run_once()  # page 1 stored and sent
    real = store.advance_campaign
    calls: List[int] = []

    def dies_after_storing(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        raise Crash()

    store.advance_campaign = dies_after_storing
    with pytest.raises(Crash):
        worker.run_once()  # page 2 stored, the process dies before the cursor moves
    assert calls and len(campaign_messages(kit, created.id)) == 80
    store.advance_campaign = real

    restarted = Campaigns(kit, chunk_size=40, max_chunks=1)
    run_until_done(Worker(kit, poll_replies=False, campaigns=restarted), restarted, created.id)
    messages = campaign_messages(kit, created.id)
    assert len(messages) == 100 and {m.state for m in messages} == {State.SENT}
    assert_sent_once(kit, messages)
    assert sum(loopback(kit).accepted_counts().values()) == 100


class JobGateway(LoopbackProvider):
    """A loopback gateway with job control (as Kolmeya's pause/play)."""

    capabilities = attrs.evolve(LoopbackProvider.capabilities, job_control=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_calls: List[Any] = []

    def pause_job(self, job_id: int) -> Dict[str, Any]:
        if job_id == 666:
            raise ProviderError("job 666 has finished and cannot be paused")
        self.job_calls.append(("pause", job_id))
        return {}

    def play_job(self, job_id: int) -> Dict[str, Any]:
        self.job_calls.append(("play", job_id))
        return {}


def test_pause_holds_the_campaign_and_resume_releases_it(store: Any) -> None:
    gateway = JobGateway(max_batch=100)
    kit = make_kit(store, provider=gateway)
    seed_contacts(store, 30)
    campaigns = Campaigns(kit)
    created = campaigns.create("pausa", "Oi", {"type": "tags", "tags": ["vip"]})
    with pytest.raises(ValidationError, match="is draft; only a running or scheduled"):
        campaigns.pause(created.id)
    campaigns.start(created.id)
    campaigns.advance()  # stored, not yet sent
    campaigns.record_jobs(created.id, [123, 666])

    control = campaigns.pause(created.id)
    assert control.campaign.status == "paused"
    assert control.jobs[123] == "ok" and "cannot be paused" in control.jobs[666]
    others = kit.send_many([phone(500), phone(501)], "Outra coisa", dispatch=False)
    assert others.queued == 2
    report = Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
    assert report.sent == 2  # the others go; the paused campaign's messages wait
    held = campaign_messages(kit, created.id)
    assert len(held) == 30 and {m.state for m in held} == {State.OUTGOING}
    assert {m.phone for m in gateway.sent} == {phone(500), phone(501)}

    resumed = campaigns.resume(created.id)
    assert resumed.campaign.status == "running" and resumed.jobs == {123: "ok", 666: "ok"}
    assert gateway.job_calls == [("pause", 123), ("play", 123), ("play", 666)]
    run_until_done(Worker(kit, poll_replies=False, campaigns=campaigns), campaigns, created.id)
    assert {m.state for m in campaign_messages(kit, created.id)} == {State.SENT}
    assert_sent_once(kit, campaign_messages(kit, created.id))


def test_pausing_on_a_gateway_without_job_control_holds_locally_and_says_so(
        store: Any) -> None:
    kit = make_kit(store)  # the loopback gateway has no jobs (capabilities.job_control off)
    seed_contacts(store, 3)
    campaigns = Campaigns(kit)
    created = campaigns.create("sem jobs", "Oi", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    campaigns.record_jobs(created.id, [7])
    control = campaigns.pause(created.id)
    assert control.campaign.status == "paused"
    assert control.jobs == {7: "provider 'loopback' cannot pause jobs"}


def test_a_paused_campaign_stores_nothing_more_until_resumed(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 10)
    campaigns = Campaigns(kit, chunk_size=4, max_chunks=1)
    created = campaigns.create("p", "Oi", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    worker.run_once()
    campaigns.pause(created.id)
    for _ in range(3):
        assert worker.run_once().empty
    assert len(campaign_messages(kit, created.id)) == 4
    campaigns.resume(created.id)
    run_until_done(worker, campaigns, created.id)
    assert len(campaign_messages(kit, created.id)) == 10


def test_cancel_cancels_what_was_not_sent(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 5)
    campaigns = Campaigns(kit)
    created = campaigns.create("c", "Oi", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    campaigns.advance()
    assert campaigns.cancel(created.id).status == "canceled"
    assert Worker(kit, poll_replies=False, campaigns=campaigns).run_once().sent == 0
    messages = campaign_messages(kit, created.id)
    assert {m.state for m in messages} == {State.CANCELED}
    assert campaigns.status(created.id).totals.canceled == 5
    with pytest.raises(ValidationError, match="is canceled"):
        campaigns.resume(created.id)


def test_a_cancel_while_a_page_is_being_stored_leaves_nothing_queued(store: Any) -> None:
    from smskit.outreach.audience import TagSource

    kit = make_kit(store)
    seed_contacts(store, 5)

    class CanceledMeanwhile(TagSource):
        """Someone runs `smskit campaign cancel` while the worker reads the second page."""

        def read_page(self, kit: SmsKit, audience: Any, cursor: Optional[str],
                      limit: int) -> Page:
            page = super().read_page(kit, audience, cursor, limit)
            if cursor is not None and campaigns.get(created.id).status == "running":
                campaigns.cancel(created.id)
            return page

    campaigns = Campaigns(kit, sources={"tags": CanceledMeanwhile()}, chunk_size=2)
    created = campaigns.create("c", "Oi", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    for _ in range(3):
        worker.run_once()
    assert loopback(kit).accepted_counts() == {}
    messages = campaign_messages(kit, created.id)
    assert len(messages) == 4  # the page stored after the cancel too...
    assert {m.state for m in messages} == {State.CANCELED}  # ...is canceled, not left queued
    totals = campaigns.status(created.id).totals
    assert (totals.queued, totals.canceled) == (0, 4)


def test_a_scheduled_campaign_starts_at_its_time(store: Any) -> None:
    clock = Clock()
    kit = make_kit(store, clock=clock)
    seed_contacts(store, 3)
    campaigns = Campaigns(kit)
    created = campaigns.create("mais tarde", "Oi", {"type": "tags", "tags": ["vip"]},
                               at=NOW + dt.timedelta(hours=1))
    assert campaigns.start(created.id).status == "scheduled"
    worker = Worker(kit, poll_replies=False, campaigns=campaigns)
    assert worker.run_once().empty and campaign_messages(kit, created.id) == []
    clock.now = NOW + dt.timedelta(hours=1, minutes=1)
    report = worker.run_once()
    assert report.campaigns[0].started and report.sent == 3


# -- totals -------------------------------------------------------------------------------------
def test_totals_on_a_seeded_campaign(store: Any) -> None:
    kit = make_kit(store)
    phones = seed_contacts(store, 6)
    kit.blacklist_add(phones[5], reason="pediu", source="test")  # canceled at composition
    loopback(kit).refuse(phones[4], "invalid")  # rejected by the gateway
    campaigns = Campaigns(kit)
    created = campaigns.create("t", "Oi {{ name }}", {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)
    Worker(kit, poll_replies=False, campaigns=campaigns).run_once()
    by_phone = {m.phone: m for m in campaign_messages(kit, created.id)}
    gateway = loopback(kit)
    kit.apply_status(gateway.status_event(by_phone[phones[0]].id, State.DELIVERED))
    kit.apply_status(gateway.status_event(by_phone[phones[1]].id, State.ERROR))
    kit.apply_status(gateway.status_event(by_phone[phones[2]].id, State.EXPIRED))
    for i, (who, text) in enumerate([(0, "Obrigado!"), (3, "SAIR"), (0, "Outra dúvida")]):
        kit.receive(InboundMessage(provider="loopback", provider_reply_id=f"r{i}",
                                   phone=phones[who], body=text,
                                   in_reply_to_message_id=by_phone[phones[who]].id))
    outsider = kit.send(phone(900), "Fora da campanha")
    kit.receive(InboundMessage(provider="loopback", provider_reply_id="r-out", phone=phone(900),
                               body="PARAR", in_reply_to_message_id=outsider.message_id))

    totals = campaigns.status(created.id).totals
    assert (totals.total, totals.queued, totals.sent, totals.delivered, totals.failed,
            totals.rejected, totals.canceled) == (6, 0, 4, 1, 2, 1, 1)
    assert (totals.replies, totals.optouts) == (3, 1)
    assert totals.cost == Decimal("0.32")
    audit = store.blacklist_audit(phones[3])
    assert [(a.action, a.source, a.campaign_id) for a in audit] == [
        ("add", "inbound:loopback", created.id)]
    assert store.blacklist_audit(phone(900))[0].campaign_id is None


def test_totals_of_many_campaigns_at_once(store: Any) -> None:
    kit = make_kit(store)
    seed_contacts(store, 4)
    campaigns = Campaigns(kit)
    ids = [campaigns.create(f"c{i}", "Oi", {"type": "tags", "tags": ["vip"]}).id
           for i in range(3)]
    campaigns.start(ids[0])
    campaigns.advance()
    totals = campaigns.totals([*ids, "unknown"])
    assert totals[ids[0]].queued == 4 and totals[ids[1]].total == 0
    assert totals["unknown"].total == 0


# -- contacts and do-not-disturb ------------------------------------------------------------------
def test_contacts_import_merges_and_reports_bad_rows(store: Any) -> None:
    first = import_contacts(store, [
        {"phone": "11910000000", "name": "Ana", "tags": "vip;sp", "plano": "ouro"},
        {"phone": "abc", "name": "X"},
        {"phone": "11910000001", "tags": "sp", "dnd_window": "25:00-09:00"},
    ], tags=["importado"])
    assert (first.created, first.updated, first.invalid) == (1, 0, 2)
    assert [r["row"] for r in first.invalid_rows] == [2, 3]
    again = import_contacts(store, [{"phone": "(11) 91000-0000", "tags": "novo"}])
    assert (again.created, again.updated) == (0, 1)
    (ana,) = store.list_contacts(tag="novo")
    assert ana.name == "Ana" and ana.variables == {"plano": "ouro"}
    assert set(ana.tags) == {"vip", "sp", "importado", "novo"}
    assert [c.phone for c in store.contacts_by_tags(["sp"])] == ["+5511910000000"]


def sp_time(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 5, day, hour, minute, tzinfo=SP).astimezone(UTC)


def test_do_not_disturb_defers_to_the_next_allowed_moment(store: Any) -> None:
    clock = Clock(sp_time(10, 22))  # Friday 22:00 in São Paulo
    kit = make_kit(store, clock=clock)
    store.save_contacts([
        make_contact(phone(1), dnd_window="20:00-09:00"),
        make_contact(phone(2), dnd_window="20:00-09:00", dnd_days=["sat", "dom"]),
        make_contact(phone(3), dnd_until=sp_time(13, 14, 30)),
        make_contact(phone(4), name="sem regra"),
    ])
    window = kit.send(phone(1), "Oi")
    assert window.state is State.OUTGOING and window.deferred_until == sp_time(11, 9)
    summary = kit.send_many([phone(2), phone(3), phone(4), phone(5)], "Oi")
    assert (summary.deferred, summary.sent) == (2, 2)
    deferred = {m.phone: m.scheduled_at for m in kit.store.list_messages(state=State.OUTGOING)}
    assert deferred == {phone(1): sp_time(11, 9), phone(2): sp_time(13, 9),
                        phone(3): sp_time(13, 14, 30)}
    clock.now = sp_time(11, 9, 1)
    assert kit.dispatch().sent == 1
    clock.now = sp_time(13, 14, 31)
    assert kit.dispatch().sent == 2
    assert kit.store.list_messages(state=State.OUTGOING) == []


def test_do_not_disturb_and_quiet_hours_combine(store: Any) -> None:
    clock = Clock(sp_time(10, 11))
    kit = make_kit(store, clock=clock, quiet_hours="12:00-14:00")
    store.save_contacts([make_contact(phone(1), dnd_until=sp_time(10, 12, 30))])
    assert kit.send(phone(1), "Oi").deferred_until == sp_time(10, 14)


# -- the command line ---------------------------------------------------------------------------


def test_campaign_commands(cli_env: Dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    path = write_csv(tmp_path / "contatos.csv",
                     "phone,name,tags\n11910000000,Ana,vip\n11910000001,Bia,vip|sp\n"
                     "11910000002,Caio,sp\n")
    imported = cli("contacts", "import", str(path), "--json")
    assert json.loads(imported.stdout)["created"] == 3
    created = cli("campaign", "create", "vip", "-t", "Oi {{ name }}", "--tags", "vip", "--json")
    assert created.exit_code == 0, created.stderr
    campaign_id = json.loads(created.stdout)["id"]
    assert cli("campaign", "start", campaign_id).exit_code == 0
    assert cli("worker", "--once").exit_code == 0
    status = json.loads(cli("campaign", "status", campaign_id, "--json").stdout)
    assert status["status"] == "done"
    assert status["totals"]["sent"] == 2 and status["totals"]["cost"] == "0.16"
    table = cli("campaign", "status")
    assert campaign_id in table.stdout and "done" in table.stdout
    one = cli("campaign", "status", campaign_id)
    assert "tags vip" in one.stdout and "R$ 0,16" in one.stdout
    assert cli("campaign", "jobs", campaign_id, "42").exit_code == 0

    bad = cli("campaign", "create", "x", "-t", "Oi", "--odoo-domain", "[('id','>',0)]")
    assert bad.exit_code == 1
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not JSON" in lines[0] and "never evaluates" in lines[0]
    quoted = cli("campaign", "create", "x", "-t", "Oi", "--odoo-domain",
                 json.dumps("[('id','>',0)]"))
    assert quoted.exit_code == 1 and "not a string" in quoted.stderr
    twice = cli("campaign", "pause", campaign_id)
    assert twice.exit_code == 1 and "is done" in twice.stderr

    dnd = cli("contacts", "dnd", "11910000002", "--window", "20:00-08:00", "--json")
    assert json.loads(dnd.stdout)["dnd_window"] == "20:00-08:00"
    listed = json.loads(cli("contacts", "list", "--tag", "sp", "--json").stdout)
    assert [c["phone"] for c in listed] == ["+5511910000001", "+5511910000002"]


def test_a_csv_saved_by_excel_needs_its_encoding_when_the_campaign_is_created(
        cli_env: Dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    # Excel in Portuguese saves CSV in cp1252 with ";": the accents of line 3 are not UTF-8
    path = tmp_path / "clientes.csv"
    path.write_bytes("telefone;nome\n11910000000;Ana\n11910000001;João\n"
                     "11910000002;Conceição\n".encode("cp1252"))
    refused = cli("campaign", "create", "cobranca", "-t", "Olá {{ nome }}", "--csv", str(path),
                  "--phone-column", "telefone")
    assert refused.exit_code == 1
    assert "line 3 is not valid utf-8-sig" in refused.stderr
    assert "--encoding cp1252" in refused.stderr
    assert json.loads(cli("campaign", "status", "--json").stdout) == []  # nothing stored

    created = cli("campaign", "create", "cobranca", "-t", "Olá {{ nome }}", "--csv", str(path),
                  "--phone-column", "telefone", "--encoding", "cp1252", "--json")
    assert created.exit_code == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["audience"]["encoding"] == "cp1252"
    assert cli("campaign", "start", data["id"]).exit_code == 0
    assert cli("worker", "--once").exit_code == 0
    status = json.loads(cli("campaign", "status", data["id"], "--json").stdout)
    assert status["status"] == "done" and status["totals"]["sent"] == 3
    bodies = sorted(m["body"] for m in json.loads(cli("messages", "--json").stdout))
    assert bodies == ["Olá Ana", "Olá Conceição", "Olá João"]


def test_campaign_create_takes_audience_json_and_the_plugins_options(
        cli_env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    help_text = cli("campaign", "create", "--help").stdout
    for option in ("--csv", "--tags", "--odoo-domain", "--field", "--audience"):
        assert option in help_text  # the built-in sources and the Odoo plugin's
    created = cli("campaign", "create", "vip", "-t", "Oi", "--audience",
                  '{"type": "tags", "tags": ["vip"], "match": "all"}', "--json")
    assert created.exit_code == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["audience"] == {"type": "tags", "tags": ["vip"], "match": "all"}
    assert data["segment"] == data["audience"]  # the former key, kept for scripts
    both = cli("campaign", "create", "x", "-t", "Oi", "--tags", "a", "--audience", "{}")
    assert both.exit_code == 2 and "give exactly one audience: --csv FILE, --tags A,B, " \
        "--odoo-domain JSON or --audience JSON" in both.stderr
    odoo = cli("campaign", "create", "recife", "-t", "Oi", "--odoo-domain",
               '[["city", "=", "Recife"]]', "--field", "name", "--json")
    assert json.loads(odoo.stdout)["audience"]["domain"] == [["city", "=", "Recife"]]
    odoo_id = json.loads(odoo.stdout)["id"]

    monkeypatch.setenv("SMSKIT_DISABLE_PLUGINS", "odoo")  # its audience type goes with it
    gone = cli("campaign", "create", "x", "-t", "Oi", "--odoo-domain", "[]")
    assert gone.exit_code == 2 and "No such option" in gone.stderr
    status = cli("campaign", "status", odoo_id)
    assert status.exit_code == 0 and "odoo (no source can read it)" in status.stdout
