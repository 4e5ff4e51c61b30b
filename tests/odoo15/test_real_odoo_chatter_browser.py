"""The chatter's SMS icon in a real browser (headless Chromium) on a served Odoo 15: after the
simulator's delivery callback, the popover of a delivered SMS says "Delivered"; a failed one
turns the icon red and "Sending Failures" shows the type and Kolmeya's reason; the web client
logs no console error (the addon's patch of the popover loads).

Needs the distribution's Chromium and the ``playwright`` package, as the dashboard's browser
test does (skipped, saying so, without them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from odoo15_harness import Server
from odoo15_smskit import configure_kolmeya, log_in, unique_phone

from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

CHROMIUM = os.environ.get("SMSKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (the browser is the system's "
                    "Chromium, never `playwright install`)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return sync_playwright


def _send(server: Server, name: str, phone: str) -> int:
    partner = int(server.xmlrpc("res.partner", "create", {"name": name, "mobile": phone}))
    context = {"active_model": "res.partner", "active_id": partner}
    composer = server.xmlrpc("sms.composer", "create", {"body": "Seu pedido saiu"},
                             context=context)
    server.xmlrpc("sms.composer", "action_send_sms", [composer], context=context)
    return partner


def test_the_chatter_shows_delivered_and_failed_with_the_reason(
        odoo_sr: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    sync_playwright = _sync_playwright()
    simulator, api_url = kolmeya_for_odoo
    configure_kolmeya(odoo_sr, api_url)
    lost_phone = unique_phone()
    simulator.configure(forced_outcomes={lost_phone[3:]: 4})
    delivered = _send(odoo_sr, "Ana", unique_phone())
    lost = _send(odoo_sr, "Bia", lost_phone)
    simulator.advance()
    errors: List[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            log_in(page, odoo_sr.url)
            page.goto(f"{odoo_sr.url}/web#id={delivered}&model=res.partner&view_type=form")
            page.click(".o_Message_notificationIconClickable", timeout=60_000)
            icon = page.wait_for_selector(".o_NotificationPopover_notificationIcon",
                                          timeout=30_000)
            assert icon is not None
            assert icon.get_attribute("title") == "Delivered"
            assert "fa-check" in (icon.get_attribute("class") or "")
            page.goto(f"{odoo_sr.url}/web#id={lost}&model=res.partner&view_type=form")
            page.click(".o_Message_notificationIconClickable.o-error", timeout=60_000)
            row = page.wait_for_selector(".modal .o_data_row", timeout=30_000)
            assert row is not None
            text = row.inner_text()
            assert "Not Delivered" in text and "não entregue" in text, text
        finally:
            browser.close()
    assert errors == [], errors
