"""Campaigns and the blacklist sync end to end: SmsKit + KolmeyaProvider over HTTP against the
Kolmeya simulator (tests/conftest.py), driven by Worker.run_once."""

from __future__ import annotations

from typing import Any, Iterator, List, Tuple

import pytest

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import State
from smskit.outreach.campaigns import Campaigns
from smskit.outreach.contacts import make_contact
from smskit.plugins import Plugins
from smskit.store.base import Store
from smskit.store.memory import MemoryStore
from smskit.worker import Worker
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

SimServer = Tuple[KolmeyaSimulator, str]


@pytest.fixture(params=["memory", "sql"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from smskit.store.sql import SqlStore

    sql = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    yield sql
    sql.close()


@pytest.fixture
def kit(kolmeya_sim: SimServer, store: Store) -> Iterator[SmsKit]:
    simulator, base = kolmeya_sim
    settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=f"{base}/api/v1",
                             kolmeya_token=simulator.config.token)
    instance = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings),
                      plugins=Plugins(settings, entry_points=False))
    yield instance
    instance.close()


def phones(n: int) -> List[str]:
    return [f"+55119{30_000_000 + i:08d}" for i in range(n)]


def test_blacklist_changes_reach_the_gateway(kolmeya_sim: SimServer, kit: SmsKit) -> None:
    simulator, _ = kolmeya_sim
    first, second = phones(2)
    kit.blacklist_add(first, reason="pediu", source="test")
    kit.blacklist_add(second, reason="pediu", source="test")
    report = Worker(kit, poll_replies=False).run_once()
    assert report.blacklist["kolmeya"].acknowledged == 2
    assert simulator.blacklist >= {first[3:], second[3:]}
    kit.blacklist_remove(first, reason="engano", source="test")
    Worker(kit, poll_replies=False).run_once()
    assert first[3:] not in simulator.blacklist and second[3:] in simulator.blacklist


def test_a_2500_contact_campaign_goes_out_in_requests_of_1000(kolmeya_sim: SimServer,
                                                              kit: SmsKit) -> None:
    simulator, _ = kolmeya_sim
    store: Any = kit.store
    store.save_contacts(make_contact(p, name="Cliente", tags=["vip"]) for p in phones(2500))
    campaigns = Campaigns(kit)
    created = campaigns.create("vip", "Olá {{ name }}, oferta só hoje.",
                               {"type": "tags", "tags": ["vip"]})
    campaigns.start(created.id)

    report = Worker(kit, poll_replies=False, campaigns=campaigns).run_once()

    assert report.sent == 2500
    requests = sorted(simulator.requests.values(), key=lambda r: r.job)
    assert [len(r.message_ids) for r in requests] == [1000, 1000, 500]
    accepted = simulator.accepted_references()
    assert len(accepted) == 2500 and set(accepted.values()) == {1}
    messages = kit.store.list_messages(campaign_id=created.id, limit=10_000)
    assert {m.state for m in messages} == {State.SENT} and len(messages) == 2500
    assert {m.id for m in messages} == set(accepted)
    status = campaigns.status(created.id)
    assert status.campaign.status == "done"
    assert (status.totals.total, status.totals.sent) == (2500, 2500)

    # Pause and play map to Kolmeya's job control once the job ids are known (the job is
    # made to look unfinished locally; at the gateway its messages are still in progress).
    jobs = [r.job for r in requests]
    campaigns.record_jobs(created.id, jobs[:1])
    store.set_campaign_status(created.id, "running", expected=("done",), now=kit.clock())
    paused = campaigns.pause(created.id)
    assert paused.jobs == {jobs[0]: "ok"}
    assert simulator.requests[requests[0].id].paused
    played = campaigns.resume(created.id)
    assert played.jobs == {jobs[0]: "ok"}
    assert not simulator.requests[requests[0].id].paused
