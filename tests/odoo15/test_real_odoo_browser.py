"""The SMS app checked as a person would (issue 14): a real headless Chromium (the
distribution's, driven by Playwright) against a served Odoo 15 whose smskit sends through the
Kolmeya simulator. Log in as admin, open a contact, send it an SMS with Odoo's stock composer,
find it in SMS > Messages, let Kolmeya's delivery callback arrive and see it turn delivered
(with its history); open the dashboard (kanban, graph, pivot), a scheduled send, a campaign and
the SMS settings. No console error, no error dialog, nothing asked of the internet. On
Odoo's stock ``sms.sms`` (readable by Settings administrators only), an SMS user and an SMS
manager who are not administrators open a message linked to one without an access error, and
an administrator follows the link.

With ``SMSKIT_SCREENSHOT_DIR`` set (``docs/img`` for the docs), the main screens are written
there as ``odoo-*.png``, 1280x800, reduced to a 256-colour palette with the Pillow of Odoo's
own virtualenv."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from dateutil import tz
from odoo15_harness import ADMIN_LOGIN, ADMIN_PASSWORD, Server
from odoo15_smskit import configure_kolmeya, log_in, store_url, unique_phone

from smskit.models import Message, State
from smskit.store.sql import SqlStore
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

CHROMIUM = "/usr/bin/chromium"
# the flags of tests/test_dashboard_browser.py
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
STATES = [State.DELIVERED] * 8 + [State.SENT, State.ERROR, State.EXPIRED, State.REJECTED]


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright; the "
                    "browser is the system's Chromium, never `playwright install`)")
    if not Path(os.environ.get("SMSKIT_CHROMIUM") or CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


def _seed_history(server: Server, company: int) -> None:
    """Three weeks of SMS already in smskit's store (the dashboard's days and gateways)."""
    rnd = random.Random(14)
    now = dt.datetime.now(dt.timezone.utc)
    rows: List[Message] = []
    for n in range(420):
        created = now - dt.timedelta(days=rnd.randint(1, 20), hours=rnd.randint(0, 8))
        state = rnd.choice(STATES)
        rows.append(Message.new(
            f"+55119{80000000 + n}", "Sua fatura vence amanhã.", state=state,
            provider=rnd.choice(("kolmeya", "kolmeya", "kolmeya", "twilio")),
            segments=1, cost=Decimal("0.07") if state is not State.REJECTED else None,
            created_at=created, tags=(f"company:{company}",)))
    rows.sort(key=lambda m: m.created_at)  # stored as they happened: newest last
    store = SqlStore(store_url(server))
    try:
        store.add_messages(rows)
    finally:
        store.close()


def _cron(server: Server) -> None:
    [found] = server.xmlrpc("ir.model.data", "search_read", [
        ("module", "=", "sms_smskit"), ("name", "=", "ir_cron_smskit_run")], fields=["res_id"])
    server.xmlrpc("ir.cron", "method_direct_trigger", [found["res_id"]])


def _quiet_hours(now: Optional[dt.datetime] = None) -> str:
    """The shop's usual quiet hours (21:00-08:00 in São Paulo) while they are far from now;
    a midday window when the tests run in (or near) the night there, so that the SMS the
    test sends goes out instead of waiting for the morning."""
    local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(tz.gettz("America/Sao_Paulo"))
    minutes = local.hour * 60 + local.minute
    night = minutes >= 20 * 60 or minutes < 9 * 60
    return "12:00-14:00" if night else "21:00-08:00"


def test_the_quiet_hours_chosen_never_hold_the_send() -> None:
    for hour in range(24):
        for minute in (0, 30, 59):
            now = dt.datetime(2026, 12, 4, hour, minute, tzinfo=dt.timezone.utc)
            local = now.astimezone(tz.gettz("America/Sao_Paulo"))
            start, end = (int(part[:2]) for part in _quiet_hours(now).split("-"))
            hour_there = local.hour + local.minute / 60
            if start < end:
                assert not (start - 1 <= hour_there < end + 1), (now, _quiet_hours(now))
            else:
                assert end + 1 <= hour_there < start - 1, (now, _quiet_hours(now))


@pytest.fixture(scope="module")
def odoo(odoo_sr: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Dict[str, Any]:
    """A served Odoo with a history, a contact, an active weekly send to a tag and a finished
    campaign, its smskit on the Kolmeya simulator."""
    server = odoo_sr
    simulator, api = kolmeya_for_odoo
    configure_kolmeya(server, api, quiet_hours=_quiet_hours(), balance_low_threshold="50")
    company = server.xmlrpc("res.users", "read", [server.uid()], ["company_id"])[0][
        "company_id"][0]
    _seed_history(server, company)
    phone = unique_phone()
    contact = server.xmlrpc("res.partner", "create", {"name": "Ana Souza", "mobile": phone})
    tag = server.xmlrpc("res.partner.category", "create", {"name": "Clientes VIP"})
    for name in ("Bruno Lima", "Carla Dias", "Davi Rocha"):
        server.xmlrpc("res.partner", "create", {"name": name, "mobile": unique_phone(),
                                                "category_id": [(6, 0, [tag])]})
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).replace(
        hour=12, minute=0, tzinfo=None)
    schedule = server.xmlrpc("smskit.schedule", "create", {
        "name": "Lembrete semanal", "frequency": "weekly", "on_mo": True, "on_th": True,
        "start_at": start.strftime("%Y-%m-%d %H:%M:%S"), "audience_type": "tag",
        "tag_ids": [(6, 0, [tag])], "body": "Olá {{ name }}, sua fatura vence amanhã."})
    server.xmlrpc("smskit.schedule", "action_activate", [schedule])
    server.xmlrpc("smskit.schedule", "action_run_now", [schedule])
    campaign = server.xmlrpc("smskit.campaign", "create", {
        "name": "Liquidação de inverno", "audience_type": "tag", "tag_ids": [(6, 0, [tag])],
        "body": "{{ name }}, até 40% off só hoje!"})
    server.xmlrpc("smskit.campaign", "action_start", [campaign])
    _cron(server)
    _cron(server)
    simulator.advance()  # the campaign's and the schedule's SMS delivered
    # the balance on today's card, as the Test connection button reads it
    server.xmlrpc("res.config.settings", "action_smskit_test_connection",
                  [server.xmlrpc("res.config.settings", "create", {})])
    return {"server": server, "simulator": simulator, "contact": contact, "phone": phone,
            "schedule": schedule, "campaign": campaign}


class Browser:
    """One logged-in page, with what went wrong on it."""

    def __init__(self, page: Any, base: str, shots: Path) -> None:
        self.page = page
        self.base = base
        self.shots = shots
        self.problems: List[str] = []
        self.requested: List[str] = []
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", lambda m: self.problems.append(f"console: {m.text}")
                if m.type == "error" else None)
        page.on("request", lambda r: self.requested.append(r.url))

    def open(self, fragment: str, ready: str) -> None:
        self.page.goto(f"{self.base}/web#{fragment}")
        self.page.wait_for_selector(ready, timeout=60_000)
        # never "network idle": the web client keeps a longpolling request open
        self.page.wait_for_timeout(800)
        dialog = self.page.query_selector(".o_dialog_error, .o_error_dialog")
        assert dialog is None, dialog.inner_text() if dialog else ""

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"odoo-{name}.png"))


@pytest.fixture
def browser(odoo: Dict[str, Any], tmp_path: Path) -> Iterator[Browser]:
    sync_playwright = _sync_playwright()
    shots = Path(os.environ.get("SMSKIT_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    server = odoo["server"]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=os.environ.get("SMSKIT_CHROMIUM") or CHROMIUM, args=CHROMIUM_ARGS,
            headless=True)
        try:
            page = chromium.new_page(viewport=VIEWPORT)
            log_in(page, server.url)
            yield Browser(page, server.url, shots)
        finally:
            chromium.close()
    _optimise(server, shots)


def _optimise(server: Server, shots: Path) -> None:
    """The screenshots as 256-colour PNGs (a fraction of the size, the same to the eye)."""
    python = server.odoo.directory / "venv" / "bin" / "python"
    files = sorted(str(p) for p in shots.glob("odoo-*.png"))
    if not files:
        return
    code = ("import sys\nfrom PIL import Image\nfor path in sys.argv[1:]:\n"
            "    Image.open(path).convert('RGB').quantize(256).save(path, optimize=True)\n")
    subprocess.run([str(python), "-c", code, *files], check=True, timeout=120)


def _row_state(page: Any, phone: str) -> str:
    row = page.locator(f".o_data_row:has(td:text-is('{phone}'))")
    return str(row.locator("[name=state]").inner_text()).strip()


def test_a_person_sends_an_sms_and_sees_it_delivered(odoo: Dict[str, Any],
                                                     browser: Browser) -> None:
    phone = odoo["phone"]
    page = browser.page
    browser.open(f"model=res.partner&id={odoo['contact']}&view_type=form",
                 ".o_form_view .o_field_widget[name=mobile]")
    assert "Ana Souza" in page.inner_text(".o_form_view .oe_title")
    # Odoo's stock composer, opened with the SMS button next to the mobile number: its send
    # goes through Odoo's sms.api, which smskit takes over (the simulator gets it)
    page.click(".o_form_view .o_field_phone_sms")
    body = page.locator(".modal textarea:visible:enabled").first
    body.wait_for(timeout=30_000)
    body.fill("Olá Ana, seu pedido 4812 saiu para entrega.")
    body.press("Tab")  # the composer's onchange (recipients, parts) done before Send
    page.wait_for_timeout(800)
    page.click(".modal-footer button[name=action_send_sms]:visible")
    page.wait_for_selector(".modal-footer button[name=action_send_sms]", state="hidden",
                           timeout=60_000)

    browser.open("action=sms_smskit.smskit_message_action", ".o_list_view .o_data_row")
    assert _row_state(page, phone) == "Sent"
    browser.shot("messages")

    odoo["simulator"].advance()  # Kolmeya's delivery report reaches the addon's webhook URL
    page.reload()
    page.wait_for_selector(".o_list_view .o_data_row")
    assert _row_state(page, phone) == "Delivered"

    page.locator(f".o_data_row:has(td:text-is('{phone}')) td[name=phone]").click()
    page.wait_for_selector(".o_form_view .o_statusbar_status")
    assert "Ana Souza" in page.inner_text(".o_form_view")
    page.click(".o_notebook .nav-link:text-is('History')")
    history = page.locator(".o_notebook .tab-pane.active .o_data_row")
    assert history.count() == 1 and "Delivered" in history.first.inner_text()
    browser.shot("message")
    assert browser.problems == []


def test_the_dashboard_a_schedule_a_campaign_and_the_settings(odoo: Dict[str, Any],
                                                              browser: Browser) -> None:
    page = browser.page
    browser.open("action=sms_smskit.smskit_stats_action", ".o_kanban_record")
    cards = page.locator(".o_kanban_record:not(.o_kanban_ghost)")
    assert cards.count() >= 15, "three weeks of days and two gateways"
    assert page.locator(".o_kanban_record .badge:has-text('Balance')").count() >= 1
    browser.shot("dashboard")
    browser.open("action=sms_smskit.smskit_stats_action&view_type=graph",
                 ".o_graph_view canvas")
    browser.shot("dashboard-graph")
    browser.open("action=sms_smskit.smskit_stats_action&view_type=pivot", ".o_pivot table")
    assert "Delivery rate" in page.inner_text(".o_pivot table")
    browser.shot("dashboard-pivot")

    browser.open(f"model=smskit.schedule&id={odoo['schedule']}&view_type=form",
                 ".o_form_view .o_statusbar_status")
    text = page.inner_text(".o_form_view")
    assert "Lembrete semanal" in text and "FREQ=WEEKLY;BYDAY=MO,TH" in text
    assert page.locator(".o_field_widget[name=upcoming]").inner_text().count("\n") == 4
    browser.shot("schedule")

    browser.open(f"model=smskit.campaign&id={odoo['campaign']}&view_type=form",
                 ".o_form_view .o_statusbar_status")
    assert "Liquidação de inverno" in page.inner_text(".o_form_view")
    assert "100%" in page.inner_text(".o_field_widget[name=progress]")
    browser.shot("campaign")

    browser.open("action=sms_smskit.smskit_settings_action",
                 ".app_settings_block[data-key=sms_smskit]")
    browser.shot("settings")
    assert "A token is set" in page.inner_text(".app_settings_block[data-key=sms_smskit]")
    token = page.locator("input[name=smskit_kolmeya_token]")
    assert token.get_attribute("type") == "password" and token.input_value() == ""
    browser.shot("settings")
    assert browser.problems == []
    local = (odoo["server"].url, "data:", "blob:", "about:")
    assert all(url.startswith(local) for url in browser.requested), "nothing from outside"


ROLES = {"sms-agent": "sms_smskit.group_smskit_user",
         "sms-manager": "sms_smskit.group_smskit_manager"}
ROLE_PASSWORD = "roles-pw"


def _ref(server: Server, xmlid: str) -> int:
    module, name = xmlid.split(".")
    [found] = server.xmlrpc("ir.model.data", "search_read",
                            [("module", "=", module), ("name", "=", name)], fields=["res_id"])
    return int(found["res_id"])


def test_every_sms_role_opens_a_message_linked_to_odoos_sms_sms(
        odoo_stock: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    # the form shows the message's Odoo record (a reference field), whose name the web client
    # asks of sms.sms as the person logged in: only Settings administrators may read sms.sms
    sync_playwright = _sync_playwright()
    server = odoo_stock
    configure_kolmeya(server, kolmeya_for_odoo[1])
    phone = unique_phone()
    server.xmlrpc("smskit.bridge", "smskit_send", phone, "Seu boleto vence hoje")
    [message] = server.xmlrpc("smskit.message", "search_read", [("phone", "=", phone)],
                              fields=["odoo_record"])
    assert message["odoo_record"].startswith("sms.sms,")
    for login, group in ROLES.items():
        server.xmlrpc("res.users", "create", {
            "name": login, "login": login, "password": ROLE_PASSWORD,
            "groups_id": [(6, 0, [_ref(server, "base.group_user"), _ref(server, group)])]})
    people = [(login, ROLE_PASSWORD) for login in ROLES] + [(ADMIN_LOGIN, ADMIN_PASSWORD)]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=os.environ.get("SMSKIT_CHROMIUM") or CHROMIUM, args=CHROMIUM_ARGS,
            headless=True)
        try:
            for login, password in people:
                page = chromium.new_page(viewport=VIEWPORT)  # a context (cookies) of its own
                problems: List[str] = []
                page.on("console", lambda m, p=problems: p.append(m.text)
                        if m.type == "error" else None)
                log_in(page, server.url, login, password)
                page.goto(f"{server.url}/web#model=smskit.message&id={message['id']}"
                          "&view_type=form")
                page.wait_for_selector(".o_form_view .o_statusbar_status, .modal",
                                       timeout=60_000)
                page.wait_for_timeout(800)
                dialog = page.query_selector(".modal")
                assert dialog is None, (login, dialog.inner_text() if dialog else "")
                assert phone in page.inner_text(".o_form_view .oe_title"), login
                page.click(".o_notebook .nav-link:text-is('Details')")
                record = page.locator(".o_notebook .tab-pane.active "
                                      ".o_field_widget[name=odoo_record]")
                if login == ADMIN_LOGIN:  # may read sms.sms: follows the link to it
                    record.click()
                    page.wait_for_selector(".o_form_view .o_field_widget[name=number]",
                                           timeout=60_000)
                    assert "model=sms.sms" in page.url, page.url
                    assert phone in page.inner_text(".o_form_view"), login
                else:  # no link for who may not follow it
                    assert record.count() == 0 or not record.is_visible(), login
                assert problems == [], (login, problems)
                page.close()
        finally:
            chromium.close()
