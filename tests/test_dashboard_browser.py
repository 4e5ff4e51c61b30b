"""The dashboard in a real headless Chromium: it loads, shows the seeded numbers, draws its three
charts, asks nothing of the internet and logs no console error.

Needs the distribution's Chromium (``apt-get install chromium``: ``/usr/bin/chromium``) and the
``playwright`` package (its driver ships in the wheel; ``playwright install`` is never run: the
browser is the system's). Skipped, saying so, when either is missing. With
``SMSKIT_SCREENSHOT_DIR`` set, the screenshot is written there (``docs/img`` for the docs).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import InboundMessage, Message, State
from smskit.providers.loopback import LoopbackProvider
from smskit.server import create_app
from smskit.store.analytics import Link
from smskit.store.sql import SqlStore
from smskit.testing.servers import serve_in_thread

CHROMIUM = os.environ.get("SMSKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
UTC = dt.timezone.utc
NOW = dt.datetime(2024, 5, 30, 18, 0, tzinfo=UTC)  # 15:00 in São Paulo
TOKEN = "painel-s3cr3t"
STATES = [State.DELIVERED] * 7 + [State.SENT, State.ERROR, State.EXPIRED, State.REJECTED,
                                  State.CANCELED]
CAMPAIGNS = [("cobranca-maio", "Cobrança de maio"), ("dia-das-maes", "Dia das Mães"),
             ("reativacao", "Reativação de clientes"), (None, None)]


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; the "
                    "browser is the system's Chromium, never `playwright install`)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


def seed(store: SqlStore) -> None:
    """30 days of two providers and three campaigns, with replies, opt-outs and clicks."""
    rnd = random.Random(2024)
    messages: List[Message] = []
    for i in range(900):
        campaign, _name = rnd.choice(CAMPAIGNS)
        created = NOW - dt.timedelta(days=rnd.randint(0, 29), hours=rnd.randint(0, 9),
                                     minutes=rnd.randint(0, 59))
        messages.append(Message.new(
            f"+55119{70000000 + i}", "Olá! Sua fatura: https://sms.exemplo.com.br/l/x",
            state=rnd.choice(STATES), provider=rnd.choice(("kolmeya", "kolmeya", "zenvia")),
            cost=Decimal("0.08"), segments=1, created_at=created, campaign_id=campaign))
    store.add_messages(messages)
    links = [Link(code=f"Seed{i:04d}", url=f"https://loja.exemplo.com.br/oferta/{i % 6}",
                  message_id=m.id, campaign_id=m.campaign_id, created_at=m.created_at)
             for i, m in enumerate(messages[:300])]
    store.add_links(links)
    for i, link in enumerate(links):
        for _ in range(i % 4):
            store.record_click(link.code, link.created_at + dt.timedelta(hours=1), "Celular")
    for i, m in enumerate(messages[:120]):
        store.record_inbound(InboundMessage(
            provider=m.provider or "kolmeya", provider_reply_id=f"R{i}", phone=m.phone,
            body="Obrigado", received_at=m.created_at + dt.timedelta(minutes=20),
            in_reply_to_message_id=m.id))
    change = getattr(store, "blacklist_change", None)
    for m in messages[:25]:
        if change is not None:  # the audited blacklist takes the time of the opt-out
            change(m.phone, "add", reason="opt-out keyword SAIR", source="inbound:kolmeya",
                   campaign_id=m.campaign_id, now=m.created_at + dt.timedelta(minutes=30))
    add_campaign = getattr(store, "add_campaign", None)
    if add_campaign is not None:
        from smskit.store.outreach import Campaign

        for campaign, name in CAMPAIGNS:
            if campaign is not None:
                add_campaign(Campaign(id=campaign, name=name, template="x", audience={}))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Tuple[str, SqlStore]]:
    store = SqlStore(f"sqlite:///{tmp_path / 'dashboard.db'}")
    seed(store)
    kit = SmsKit(Settings.load(environ={}, dashboard_token=TOKEN), store=store,
                 provider=LoopbackProvider(), clock=lambda: NOW)
    with serve_in_thread(create_app(kit)) as base:
        yield base, store
    store.close()


_CHART_PIXELS = """() => Array.from(document.querySelectorAll('.chart-box canvas')).map(c => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let painted = 0;
  for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) painted++; }
  return [c.width, c.height, painted];
})"""


def test_dashboard_in_headless_chromium(served: Tuple[str, SqlStore], tmp_path: Path) -> None:
    sync_playwright = _sync_playwright()
    base, store = served
    report = store.dashboard_stats(dt.date(2024, 5, 1), dt.date(2024, 5, 30))
    totals = report.totals
    problems: List[str] = []
    requested: List[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, http_credentials={"username": "painel", "password": TOKEN},
            viewport={"width": 1280, "height": 1000}, locale="pt-BR")
        try:
            page = context.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
            page.on("request", lambda r: requested.append(r.url))
            page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
                    if r.status >= 400 else None)
            response = page.goto(f"{base}/dashboard", wait_until="networkidle")
            assert response is not None and response.status == 200
            page.wait_for_selector("body[data-charts]", timeout=15_000)
            state = page.get_attribute("body", "data-charts")
            cards = {
                page.get_attribute(f"#totals .card:nth-child({i})", "data-metric"):
                    page.inner_text(f"#totals .card:nth-child({i}) .value")
                for i in range(1, 9)
            }
            pixels = page.evaluate(_CHART_PIXELS)
            campaign_rows = page.locator("#campaigns tbody tr").count()
            campaign_text = page.inner_text("#campaigns")
            shot = Path(os.environ.get("SMSKIT_SCREENSHOT_DIR") or tmp_path) / "dashboard.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=False)
        finally:
            context.close()
    assert problems == []
    assert state == "ready"
    assert all(url.startswith(base) for url in requested), requested  # nothing from outside
    assert cards["sent"] == f"{totals.sent:,}".replace(",", ".")
    assert cards["delivered"] == f"{totals.delivered:,}".replace(",", ".")
    assert cards["clicks"] == str(totals.clicks) and totals.clicks > 0
    assert cards["replies"] == str(totals.replies) == "120"
    assert cards["cost"] == "R$ " + f"{totals.cost:.2f}".replace(".", ",")
    assert len(pixels) == 3
    for width, height, painted in pixels:
        assert width > 200 and height > 100 and painted > 500
    assert campaign_rows == len(report.campaigns) == 3
    if getattr(store, "add_campaign", None) is not None:
        assert "Cobrança de maio" in campaign_text
    assert shot.stat().st_size > 10_000
