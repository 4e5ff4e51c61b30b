"""The dashboard, /api/stats and /l/{code} on a real uvicorn, on a seeded memory or SQLite store.

Days are America/Sao_Paulo days: a message created at 02:30 UTC on the 10th belongs to the 9th.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest
import sqlalchemy as sa

from smskit.config import Settings
from smskit.errors import StoreError
from smskit.kit import SmsKit
from smskit.models import InboundMessage, Message, State, StatusEvent
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.store.analytics import Link, local_bounds, offset_spans
from smskit.store.memory import MemoryStore
from smskit.store.sql import SqlStore
from smskit.store.sql.tables import VERSION_TABLE
from smskit.testing.servers import serve_in_thread
from smskit.timeutil import zone

UTC = dt.timezone.utc
SP = zone("America/Sao_Paulo")
NOW = dt.datetime(2024, 5, 10, 15, 0, tzinfo=UTC)  # 12:00 in São Paulo
D9 = dt.datetime(2024, 5, 9, 14, 0, tzinfo=UTC)
LATE = dt.datetime(2024, 5, 9, 23, 30, tzinfo=SP)  # 02:30 UTC on the 10th
D10 = dt.datetime(2024, 5, 10, 13, 0, tzinfo=UTC)
OLD = dt.datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
TOKEN = "painel-s3cr3t"
SECRET = "webhook-s3cr3t"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_NO_PG = "set SMSKIT_TEST_POSTGRES_URL=postgresql://user@127.0.0.1:5432/db to run on PostgreSQL"


@pytest.fixture(params=[
    "memory",
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=_NO_PG)),
])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty memory, SQLite or (SMSKIT_TEST_POSTGRES_URL) PostgreSQL store."""
    if request.param == "memory":
        yield MemoryStore()
        return
    made = SqlStore(PG_URL if request.param == "postgresql" else
                    f"sqlite:///{tmp_path / 'smskit.db'}")
    if request.param == "postgresql":
        with made._engine.begin() as conn:
            tables = set(made._engine.dialect.get_table_names(conn)) - {VERSION_TABLE}
            conn.exec_driver_sql(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY CASCADE")
    yield made
    made.close()


def make_kit(store: Any, clock: Optional[Any] = None, **values: str) -> SmsKit:
    values.setdefault("webhook_secret", SECRET)
    values.setdefault("dashboard_token", TOKEN)
    return SmsKit(Settings.load(environ={}, **values), store=store,
                  provider=LoopbackProvider(), clock=clock or (lambda: NOW))


def message(n: int, state: State, created: dt.datetime, *, provider: str = "kolmeya",
            cost: Optional[str] = None, campaign: Optional[str] = None) -> Message:
    return Message.new(f"+55119876{n:05d}", f"mensagem {n}", state=state, provider=provider,
                       cost=Decimal(cost) if cost else None, created_at=created,
                       campaign_id=campaign, segments=1)


def seed(store: Any) -> Dict[str, Any]:
    """The dataset every figure below is computed from (see the module docstring)."""
    promo = [message(1, State.DELIVERED, D9, cost="0.08", campaign="promo"),
             message(2, State.DELIVERED, LATE, cost="0.16", campaign="promo"),
             message(3, State.ERROR, D9, cost="0.08", campaign="promo")]
    cobranca = [message(4, State.SENT, D10, cost="0.08", campaign="cobranca"),
                message(5, State.REJECTED, D10, campaign="cobranca")]
    loop = [message(6, State.DELIVERED, D10, provider="loopback", cost="0.10"),
            message(7, State.CANCELED, D10, provider="loopback")]
    old = [message(8, State.DELIVERED, OLD, cost="0.08", campaign="promo")]
    store.add_messages(promo + cobranca + loop + old)
    store.record_inbound(InboundMessage(provider="kolmeya", provider_reply_id="R1",
                                        phone=promo[0].phone, body="quero", received_at=D10,
                                        in_reply_to_message_id=promo[0].id))
    store.record_inbound(InboundMessage(provider="loopback", provider_reply_id="R2",
                                        phone="+5511911112222", body="oi", received_at=D9))
    store.add_links([
        Link(code="PromoL01", url="https://loja.com.br/promo", message_id=promo[0].id,
             campaign_id="promo", created_at=D9),
        Link(code="CobrL002", url="https://pag.com.br/boleto", message_id=cobranca[0].id,
             campaign_id="cobranca", created_at=D10),
    ])
    for at in (D10, D10, D10, LATE):
        store.record_click("PromoL01", at, "Mozilla/5.0")
    store.record_click("CobrL002", D10)
    store.record_click("CobrL002", OLD)  # outside the range
    return {"promo": promo, "cobranca": cobranca}


EXPECTED_DAYS = [
    {"day": "2024-05-09", "provider": "kolmeya", "sent": 3, "delivered": 2, "failed": 1,
     "rejected": 0, "canceled": 0, "cost": "0.32", "delivery_rate": 0.6667, "replies": 0},
    {"day": "2024-05-09", "provider": "loopback", "sent": 0, "delivered": 0, "failed": 0,
     "rejected": 0, "canceled": 0, "cost": "0.00", "delivery_rate": None, "replies": 1},
    {"day": "2024-05-10", "provider": "kolmeya", "sent": 1, "delivered": 0, "failed": 0,
     "rejected": 1, "canceled": 0, "cost": "0.08", "delivery_rate": 0.0, "replies": 1},
    {"day": "2024-05-10", "provider": "loopback", "sent": 1, "delivered": 1, "failed": 0,
     "rejected": 0, "canceled": 1, "cost": "0.10", "delivery_rate": 1.0, "replies": 0},
]


def get_stats(base: str, **params: str) -> Dict[str, Any]:
    response = httpx.get(f"{base}/api/stats", params=params, headers=BEARER)
    assert response.status_code == 200, response.text
    body: Dict[str, Any] = response.json()
    return body


# -- figures -----------------------------------------------------------------------------------
def test_api_stats_on_a_seeded_store(store: Any) -> None:
    made = seed(store)
    with serve_in_thread(create_app(make_kit(store))) as base:
        stats = get_stats(base)
    assert stats["range"] == {"start": "2024-04-11", "end": "2024-05-10",
                              "timezone": "America/Sao_Paulo"}
    assert stats["generated_at"] == NOW.isoformat()
    assert stats["totals"] == {"sent": 5, "delivered": 3, "failed": 1, "rejected": 1,
                               "canceled": 1, "cost": "0.50", "delivery_rate": 0.6,
                               "replies": 2, "opt_outs": 0, "clicks": 5}
    assert stats["days"] == EXPECTED_DAYS
    assert [(p["provider"], p["sent"], p["cost"]) for p in stats["providers"]] == [
        ("kolmeya", 4, "0.40"), ("loopback", 1, "0.10")]
    assert stats["campaigns"] == [
        {"campaign_id": "cobranca", "name": None, "messages": 2, "sent": 1, "delivered": 0,
         "failed": 0, "rejected": 1, "canceled": 0, "cost": "0.08", "delivery_rate": 0.0,
         "replies": 0, "opt_outs": 0, "clicks": 1, "clicked_messages": 1},
        {"campaign_id": "promo", "name": None, "messages": 3, "sent": 3, "delivered": 2,
         "failed": 1, "rejected": 0, "canceled": 0, "cost": "0.32", "delivery_rate": 0.6667,
         "replies": 1, "opt_outs": 0, "clicks": 4, "clicked_messages": 1},
    ]
    assert stats["clicks"] == [{"day": "2024-05-09", "count": 1},
                               {"day": "2024-05-10", "count": 4}]
    assert stats["top_links"] == [
        {"code": "PromoL01", "url": "https://loja.com.br/promo",
         "message_id": made["promo"][0].id, "campaign_id": "promo", "clicks": 4},
        {"code": "CobrL002", "url": "https://pag.com.br/boleto",
         "message_id": made["cobranca"][0].id, "campaign_id": "cobranca", "clicks": 1},
    ]
    assert stats["opt_outs"] == []


def test_a_range_narrows_every_figure(store: Any) -> None:
    seed(store)
    with serve_in_thread(create_app(make_kit(store))) as base:
        one_day = get_stats(base, start="2024-05-10", end="2024-05-10")
        april = get_stats(base, start="2024-04-01", end="2024-04-01")
    assert one_day["days"] == EXPECTED_DAYS[2:]
    assert [c["campaign_id"] for c in one_day["campaigns"]] == ["cobranca"]
    assert one_day["totals"]["clicks"] == 4
    assert april["totals"]["sent"] == 1 and april["totals"]["clicks"] == 1
    assert [c["campaign_id"] for c in april["campaigns"]] == ["promo"]


def test_costs_read_the_same_whatever_the_store_or_how_the_price_was_written(
        store: Any) -> None:
    # a price configured as "0.0800" gives costs with trailing zeros; SQL keeps micro-units
    store.add_messages([message(1, State.SENT, D10, cost="0.1600"),
                        message(2, State.DELIVERED, D10, cost="0.075"),
                        message(3, State.SENT, D9, cost="0.0000")])
    with serve_in_thread(create_app(make_kit(store))) as base:
        stats = get_stats(base, start="2024-05-09", end="2024-05-10")
    assert stats["totals"]["cost"] == "0.235"
    assert [d["cost"] for d in stats["days"]] == ["0.00", "0.235"]
    assert [p["cost"] for p in stats["providers"]] == ["0.235"]


def test_offset_spans_cut_a_range_at_a_dst_change() -> None:
    # the stores' local days (across midnight and DST) are checked by the shipped store suite
    # (smskit.testing.stores, run in test_store.py); this is the arithmetic under the SQL one.
    # 2018: São Paulo moved to -02 on Nov 4th (00:00 -> 01:00) and back on Feb 17th 2019
    spans = offset_spans(*local_bounds(dt.date(2018, 11, 3), dt.date(2018, 11, 5), SP), SP)  # type: ignore[arg-type]
    assert [offset for _, _, offset in spans] == [-10800, -7200]
    change = dt.datetime(2018, 11, 4, 3, 0, tzinfo=UTC)
    assert [(lo, hi) for lo, hi, _ in spans] == [
        (dt.datetime(2018, 11, 3, 3, 0, tzinfo=UTC), change),
        (change, dt.datetime(2018, 11, 6, 2, 0, tzinfo=UTC))]


def test_campaign_names_come_from_the_campaigns_table(store: Any) -> None:
    from smskit.store.outreach import Campaign, OutreachStore

    if not isinstance(store, OutreachStore):
        pytest.skip("this store keeps no campaigns")
    seed(store)
    store.add_campaign(Campaign(id="promo", name="Promoção de maio", template="x",
                                audience={"phones": []}))
    with serve_in_thread(create_app(make_kit(store))) as base:
        stats = get_stats(base)
    assert {c["campaign_id"]: c["name"] for c in stats["campaigns"]} == {
        "promo": "Promoção de maio", "cobranca": None}


def test_an_opt_out_reply_is_counted_on_its_day(store: Any) -> None:
    kit = make_kit(store, clock=lambda: dt.datetime.now(UTC))
    sent = kit.send("+5511987654321", "Promoção! Responda SAIR para não receber mais.")
    kit.receive(InboundMessage(provider="loopback", provider_reply_id="R-sair",
                               phone="+5511987654321", body="SAIR",
                               in_reply_to_message_id=sent.message_id))
    with serve_in_thread(create_app(kit)) as base:
        stats = get_stats(base)
    today = dt.datetime.now(UTC).astimezone(SP).date().isoformat()
    assert stats["totals"]["opt_outs"] == 1 and stats["totals"]["replies"] == 1
    assert stats["opt_outs"] == [{"day": today, "count": 1}]


# -- the page ------------------------------------------------------------------------------------
def test_only_an_opt_out_reply_is_a_campaign_opt_out(store: Any) -> None:
    """A number the gateway refuses as opted out (Twilio's 21610: it said STOP some other
    time) is blacklisted, but it is not an opt-out of the campaign whose message was refused:
    the campaign rows, like the totals and `campaign status`, count opt-out replies only."""
    kit = make_kit(store)
    refused = kit.send("+5511987650001", "Promoção", campaign_id="promo")
    answered = kit.send("+5511987650002", "Promoção", campaign_id="promo")
    message = kit.get(refused.message_id)
    assert message is not None and message.provider_message_id
    kit.apply_status(StatusEvent(provider="loopback", state=State.ERROR, error_code="21610",
                                 provider_message_id=message.provider_message_id,
                                 opted_out=True))
    kit.receive(InboundMessage(provider="loopback", provider_reply_id="R9",
                               phone="+5511987650002", body="SAIR", received_at=NOW,
                               in_reply_to_message_id=answered.message_id))
    assert kit.store.is_blacklisted("+5511987650001")
    with serve_in_thread(create_app(kit)) as base:
        stats = get_stats(base)
    assert stats["totals"]["opt_outs"] == 1
    assert [(c["campaign_id"], c["opt_outs"]) for c in stats["campaigns"]] == [("promo", 1)]
    assert kit.store.campaign_totals(["promo"])["promo"].optouts == 1


def test_dashboard_page_shows_the_numbers_and_embeds_the_same_data(store: Any) -> None:
    seed(store)
    from smskit.store.outreach import Campaign, OutreachStore

    if isinstance(store, OutreachStore):
        store.add_campaign(Campaign(id="promo", name="<b>Promo</b> & cia", template="x",
                                    audience={"phones": []}))
    with serve_in_thread(create_app(make_kit(store))) as base:
        response = httpx.get(f"{base}/dashboard", auth=("qualquer", TOKEN))
        stats = get_stats(base)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = response.text
    cards = dict(re.findall(r'data-metric="(\w+)"[^>]*>.*?<span class="value">([^<]*)</span>',
                            html))
    assert cards == {"sent": "5", "delivered": "3", "failed": "1", "delivery_rate": "60,0%",
                     "cost": "R$ 0,50", "replies": "2", "opt_outs": "0", "clicks": "5"}
    assert "<b>Promo</b>" not in html
    if isinstance(store, OutreachStore):
        assert "&lt;b&gt;Promo&lt;/b&gt; &amp; cia" in html
    embedded = re.search(r'<script id="smskit-stats" type="application/json">(.*?)</script>',
                         html, re.S)
    assert embedded is not None
    stats.pop("generated_at")
    assert json.loads(embedded.group(1)) == stats
    for asset in ("/static/vendor/uplot/uPlot.iife.min.js", "/static/dashboard.js",
                  "/static/vendor/uplot/uPlot.min.css", "/static/dashboard.css"):
        assert f'"{asset}"' in html


def test_static_assets_are_served_from_the_package() -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    with serve_in_thread(create_app(make_kit(store))) as base:
        library = httpx.get(f"{base}/static/vendor/uplot/uPlot.iife.min.js")
        ours = httpx.get(f"{base}/static/dashboard.js")
        missing = httpx.get(f"{base}/static/../app.py")
    assert library.status_code == 200 and library.content.startswith(b"/*! https://github.com")
    assert "javascript" in library.headers["content-type"]
    assert ours.status_code == 200 and b"uPlot" in ours.content
    assert missing.status_code == 404


def test_an_empty_store_renders_an_empty_page(store: Any) -> None:
    with serve_in_thread(create_app(make_kit(store))) as base:
        page = httpx.get(f"{base}/dashboard", auth=("u", TOKEN))
        stats = get_stats(base)
    assert page.status_code == 200 and "Nenhuma campanha no período." in page.text
    assert stats["totals"]["sent"] == 0 and stats["totals"]["delivery_rate"] is None


# -- access -------------------------------------------------------------------------------------
def test_dashboard_asks_a_browser_for_basic_credentials() -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    with serve_in_thread(create_app(make_kit(store))) as base:
        anonymous = httpx.get(f"{base}/dashboard")
        wrong = httpx.get(f"{base}/dashboard", auth=("admin", "errado"))
        webhook_secret = httpx.get(f"{base}/dashboard", auth=("admin", SECRET))
        in_query = httpx.get(f"{base}/dashboard", params={"token": TOKEN})
        good = httpx.get(f"{base}/dashboard", auth=("admin", TOKEN))
        bearer = httpx.get(f"{base}/dashboard", headers=BEARER)
    for refused in (anonymous, wrong, webhook_secret, in_query):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic realm=")
        assert TOKEN not in refused.text
    assert good.status_code == 200 and bearer.status_code == 200


def test_api_stats_takes_a_bearer_or_basic_token() -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    with serve_in_thread(create_app(make_kit(store))) as base:
        anonymous = httpx.get(f"{base}/api/stats")
        wrong = httpx.get(f"{base}/api/stats", headers={"Authorization": "Bearer nope"})
        garbage = httpx.get(f"{base}/api/stats", headers={"Authorization": "Basic %%%"})
        basic = httpx.get(f"{base}/api/stats", auth=("x", TOKEN))
    assert anonymous.status_code == wrong.status_code == garbage.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"
    assert "Bearer" in anonymous.headers["www-authenticate"]
    assert basic.status_code == 200


def test_the_webhook_secret_never_opens_it() -> None:
    # Kolmeya receives the webhook secret in every callback URL: it must open nothing else
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    kit = SmsKit(Settings.load(environ={}, webhook_secret=SECRET), store=store,
                 provider=LoopbackProvider(), clock=lambda: NOW)
    with serve_in_thread(create_app(kit)) as base:
        basic = httpx.get(f"{base}/api/stats", auth=("x", SECRET))
        bearer = httpx.get(f"{base}/api/stats", headers={"Authorization": f"Bearer {SECRET}"})
    assert basic.status_code == bearer.status_code == 503
    assert "SMSKIT_DASHBOARD_TOKEN" in basic.json()["detail"]


@pytest.mark.parametrize("which", ["current", "previous"])
def test_a_dashboard_token_equal_to_a_webhook_secret_is_refused(
        which: str, caplog: pytest.LogCaptureFixture) -> None:
    old = "an-old-webhook-secret"
    token = SECRET if which == "current" else old
    kit = SmsKit(Settings.load(environ={}, webhook_secret=SECRET, webhook_secrets_previous=old,
                               dashboard_token=token), store=MemoryStore(),
                 provider=LoopbackProvider(), clock=lambda: NOW)
    with caplog.at_level(logging.ERROR, logger="smskit.server.credentials"):
        app = create_app(kit)
    assert "SMSKIT_DASHBOARD_TOKEN is the webhook secret" in caplog.text
    assert token not in caplog.text
    with serve_in_thread(app) as base:
        response = httpx.get(f"{base}/api/stats", auth=("x", token))
    assert response.status_code == 503


def test_without_any_credential_it_is_closed() -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    kit = SmsKit(Settings.load(environ={}), store=store, provider=LoopbackProvider())
    with serve_in_thread(create_app(kit)) as base:
        api = httpx.get(f"{base}/api/stats", headers=BEARER)
        page = httpx.get(f"{base}/dashboard", auth=("x", ""))
    assert api.status_code == page.status_code == 503
    assert "SMSKIT_DASHBOARD_TOKEN" in api.json()["detail"]


@pytest.mark.parametrize(("params", "detail"), [
    ({"start": "2024-13-01"}, "start: expected a date YYYY-MM-DD"),
    ({"start": "2024-05-10", "end": "2024-05-01"}, "before start"),
    ({"start": "2020-01-01", "end": "2024-01-01"}, "at most 366"),
    # not a 500 or a "store unavailable" 503: the calendar ends there
    ({"end": "0001-01-01"}, "outside the calendar"),
    ({"start": "9999-12-01", "end": "9999-12-31"}, "outside the calendar"),
    # only YYYY-MM-DD, on every Python (3.11's fromisoformat also takes these)
    ({"start": "20240501"}, "start: expected a date YYYY-MM-DD"),
    ({"end": "2024-W19-5"}, "end: expected a date YYYY-MM-DD"),
])
def test_a_bad_range_is_a_400(params: Dict[str, str], detail: str) -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    with serve_in_thread(create_app(make_kit(store))) as base:
        api = httpx.get(f"{base}/api/stats", params=params, headers=BEARER)
        page = httpx.get(f"{base}/dashboard", params=params, headers=BEARER)
    assert api.status_code == page.status_code == 400
    assert detail in api.json()["detail"]
    assert detail in page.text


class _DownStore(MemoryStore):
    def dashboard_stats(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreError("dashboard_stats: database is unreachable")


def test_a_failing_store_is_a_503_without_details() -> None:
    with serve_in_thread(create_app(make_kit(_DownStore()))) as base:
        api = httpx.get(f"{base}/api/stats", headers=BEARER)
        page = httpx.get(f"{base}/dashboard", headers=BEARER)
    assert api.status_code == page.status_code == 503
    assert "unreachable" not in api.text and "Traceback" not in page.text


# -- short links ------------------------------------------------------------------------------
def test_a_short_link_redirects_and_counts_the_click(store: Any) -> None:
    kit = make_kit(store, public_url="https://sms.exemplo.com.br", link_tracking="true")
    outcome = kit.send("+5511987654321", "Boleto: https://pag.exemplo.com.br/b?id=7&x=ç",
                       campaign_id="cobranca")
    [link] = store.links_of(outcome.message_id)
    app = create_app(kit)
    app.state.dashboard.click_every = 0.05  # clicks are buffered, written in batches
    with serve_in_thread(app) as base, httpx.Client() as client:
        first = client.get(f"{base}/l/{link.code}", headers={"User-Agent": "Celular/1.0"})
        second = client.get(f"{base}/l/{link.code}")
        preview = client.head(f"{base}/l/{link.code}")
        deadline = time.monotonic() + 5
        while store.click_count(link.code) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = get_stats(base)
    for response in (first, second, preview):
        assert response.status_code == 302
        assert response.headers["location"] == "https://pag.exemplo.com.br/b?id=7&x=%C3%A7"
        assert "no-store" in response.headers["cache-control"]
    assert store.click_count(link.code) == 2  # HEAD (a link preview) is not a click
    assert stats["totals"]["clicks"] == 2
    assert stats["campaigns"][0]["clicks"] == 2
    assert stats["top_links"][0]["message_id"] == outcome.message_id


def test_an_unknown_code_is_a_404_and_never_a_redirect() -> None:
    store = MemoryStore()  # HTTP behaviour: one store kind is enough
    store.add_links([Link(code="Known123", url="https://a.com.br", message_id="M",
                          created_at=NOW)])
    pages = ["/l/Unknown1", "/l/ab", "/l/a-b_c.d", "/l/known123"]
    # a slash in the code never reaches the route: the server's own 404
    others = ["/l/..%2F..%2Fetc", "/l/https:%2F%2Fevil.example"]
    with serve_in_thread(create_app(make_kit(store))) as base, httpx.Client() as client:
        responses = {path: client.get(base + path) for path in pages + others}
    for path, response in responses.items():
        assert response.status_code == 404, path
        assert "location" not in response.headers
        if path in pages:
            assert response.headers["content-type"].startswith("text/html")
            assert "Link não encontrado" in response.text
    assert store.click_count("Known123") == 0


# -- scale -------------------------------------------------------------------------------------
def _seed_many(store: SqlStore, n: int) -> None:
    messages = [message(i, (State.DELIVERED, State.SENT, State.ERROR)[i % 3],
                        D10 - dt.timedelta(hours=i % 200), cost="0.08",
                        campaign=f"c{i % 3}", provider=("kolmeya", "loopback")[i % 2])
                for i in range(n)]
    store.add_messages(messages)
    store.add_links([Link(code=f"S{i:07d}", url="https://a.com.br", message_id=m.id,
                          campaign_id=m.campaign_id, created_at=m.created_at)
                     for i, m in enumerate(messages)])
    for i, m in enumerate(messages[: n // 2]):
        store.record_click(f"S{i:07d}", m.created_at)
        store.record_inbound(InboundMessage(provider="kolmeya", provider_reply_id=f"R{i}",
                                            phone=m.phone, body="ok", received_at=m.created_at,
                                            in_reply_to_message_id=m.id))


def test_api_stats_runs_the_same_statements_for_10_or_300_messages(tmp_path: Path) -> None:
    counts: List[int] = []
    for n in (10, 300):
        store = SqlStore(f"sqlite:///{tmp_path / f'scale{n}.db'}")
        _seed_many(store, n)
        statements: List[str] = []

        def count(conn: Any, cursor: Any, statement: str, *rest: Any,
                  seen: List[str] = statements) -> None:
            seen.append(statement)

        with serve_in_thread(create_app(make_kit(store))) as base:
            sa.event.listen(store._engine, "before_cursor_execute", count)
            stats = get_stats(base)
            sa.event.remove(store._engine, "before_cursor_execute", count)
        store.close()
        assert stats["totals"]["sent"] == n
        assert stats["totals"]["clicks"] == n // 2 and stats["totals"]["replies"] == n // 2
        assert len(stats["campaigns"]) == 3
        counts.append(len(statements))
    assert counts[0] == counts[1]
    # 13 for the figures, 3 for the provider lines (queue counts, key/value state, moves),
    # 2 for the held count (the ambiguous batches, in a transaction of their own).
    assert counts[0] <= 18
