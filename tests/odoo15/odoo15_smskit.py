"""What the ``real_odoo`` tests do to and read from a served Odoo's smskit: its settings (the
``smskit.*`` system parameters), Kolmeya-shaped callbacks, posts to the addon's webhook URL,
and the records and sidecar the addon keeps."""

from __future__ import annotations

import json
import random
from typing import Any, Dict, List, Optional

import httpx
from odoo15_harness import ADMIN_LOGIN, ADMIN_PASSWORD, Server

from smskit_odoo.journal import Journal

#: What the served Odoo's smskit uses as Kolmeya (the simulator) and its webhook secret.
SIM_TOKEN = "odoo-sim-token"
WEBHOOK_SECRET = "odoo-webhook-secret"
WEBHOOK_PATH = "/smskit/webhooks/kolmeya/{kind}"


def configure_kolmeya(server: Server, api_url: str, **extra: Optional[str]) -> None:
    """Point the served Odoo's smskit at a Kolmeya (simulator) API, with webhooks coming back
    to that Odoo's own URL."""
    server.set_params({
        "smskit.provider": "kolmeya",
        "smskit.kolmeya_token": SIM_TOKEN,
        "smskit.kolmeya_base_url": api_url,
        "smskit.public_url": f"{server.url}/smskit",
        "smskit.webhook_secret": WEBHOOK_SECRET,
        **{f"smskit.{key}": value for key, value in extra.items()},
    })


def unique_phone() -> str:
    """A São Paulo mobile number no other test uses."""
    return f"+55119{random.randint(10_000_000, 99_999_999)}"


def post_webhook(server: Server, kind: str, body: Any, *, token: Optional[str] = WEBHOOK_SECRET,
                 content_type: str = "application/json",
                 client: Optional[httpx.Client] = None) -> httpx.Response:
    """POST a callback to the addon's webhook URL as Kolmeya does (``body`` bytes are sent as
    they are, anything else as JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    params = {"token": token} if token is not None else {}
    url = f"{server.url}{WEBHOOK_PATH.format(kind=kind)}"
    headers = {"Content-Type": content_type}
    if client is not None:
        return client.post(url, content=data, params=params, headers=headers)
    return httpx.post(url, content=data, params=params, headers=headers, timeout=120)


def reply_callback(reply_id: int, phone: str, text: str) -> Dict[str, Any]:
    """Kolmeya's reply callback (``phone`` E.164; Kolmeya names it without the 55)."""
    national = phone[3:] if phone.startswith("+55") else phone.lstrip("+")
    return {"reply": {"id": reply_id, "reply": text, "received_at": "04/12/2026 10:00:00",
                      "message": {"id": f"sim-msg-{reply_id}", "reference": None,
                                  "phone": national, "content": "Oferta"}}}


def store_url(server: Server) -> str:
    """The addon's default store of this server: its own database, schema ``smskit``
    (through psycopg 3 here; the addon reaches it through Odoo's psycopg2)."""
    odoo = server.odoo
    return (f"postgresql://odoo:odoo@{odoo.pg_host}:{odoo.pg_port}/{server.db}"
            "?options=-csearch_path%3Dsmskit")


def journal(server: Server) -> Journal:
    """The journal of pending Odoo writes in the addon's default store of this server."""
    return Journal(store_url(server))


def sms_rows(server: Server, phone: str, fields: List[str]) -> List[Dict[str, Any]]:
    """The ``sms.message`` rows of a phone, oldest first."""
    return list(server.xmlrpc("sms.message", "search_read", [("phone", "=", phone)],
                              fields=fields, order="id"))


def log_in(page: Any, url: str, login: str = ADMIN_LOGIN,
           password: str = ADMIN_PASSWORD) -> None:
    """Log a Playwright ``page`` into the served Odoo at ``url`` (as admin unless told), as a
    person does.

    The form is filled only once the login page has loaded everything it asks for: a request
    of the page still in flight when the form is posted (its lazily loaded scripts fetch
    translations and templates) can save the session it started with over the one the login
    authenticated (Odoo 15 keeps sessions in files, each request writing back its own copy),
    and the web client then lands back on the login page."""
    page.goto(f"{url}/web/login")
    page.wait_for_load_state("networkidle")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector(".o_main_navbar", timeout=60_000)
