"""Kolmeya's callbacks posted to the addon's webhook URL on a served Odoo 15, exactly as
Kolmeya (and the simulator) sends them: ``POST``, ``Content-Type: application/json``, the
token in the query.

Issue 12: Odoo 15 hands every ``application/json`` POST to its JSON-RPC dispatcher before the
``type="http"`` route runs, so the caller got HTTP 200 with a JSON-RPC error body whatever the
token. The answers come from smskit's webhook gate now: 2xx only once the write is committed,
401/403 without or with a wrong token, 4xx for malformed input, 503 + Retry-After when the
database is unavailable. Every test runs on both configurations the addon README describes:

* ``http-dispatch``: the addon installed (its ``ir.http._dispatch`` makes the request plain
  HTTP once Odoo has routed it to the database);
* ``server-wide``: the addon also in ``server_wide_modules`` (``--load base,web,sms_smskit``):
  webhook requests are plain HTTP from the start, which adds the last two guarantees (every
  malformed body is the gate's 400; a database that does not answer is a 503).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Tuple

import httpx
import pytest
from odoo15_harness import Server
from odoo15_smskit import (
    WEBHOOK_PATH,
    WEBHOOK_SECRET,
    configure_kolmeya,
    journal,
    post_webhook,
    reply_callback,
    sms_rows,
    unique_phone,
)

from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

CONFIGURATIONS = ["http-dispatch", "server-wide"]


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def odoo(request: pytest.FixtureRequest, odoo_servers: Any,
         kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Iterator[Server]:
    """A served Odoo in one of the two configurations, its smskit sending through the
    simulator."""
    server = odoo_servers.start("sr", server_wide=request.param == "server-wide")
    try:
        configure_kolmeya(server, kolmeya_for_odoo[1])
        yield server
    finally:
        odoo_servers.stop(server)


def _gate_answer(response: httpx.Response) -> Any:
    """The JSON body smskit's gate answers with (never a JSON-RPC envelope or a traceback)."""
    assert "Traceback" not in response.text
    body = response.json()
    assert "jsonrpc" not in body, f"Odoo's JSON-RPC dispatcher answered: {response.text[:300]}"
    return body


def test_the_issue_curl_reaches_the_gate(odoo: Server) -> None:
    # curl -X POST -H 'Content-Type: application/json' -d '{}' .../status?token=<secret>
    response = post_webhook(odoo, "status", {})
    body = _gate_answer(response)
    assert response.status_code == 400 and body["error"] == "invalid payload"


@pytest.mark.parametrize(("token", "status", "error"), [
    (None, 401, "unauthorized"), ("wrong", 403, "forbidden")])
def test_json_posts_without_the_secret_are_refused(odoo: Server, token: Any, status: int,
                                                   error: str) -> None:
    response = post_webhook(odoo, "status", {"id": "x", "messages": []}, token=token)
    assert (response.status_code, _gate_answer(response)["error"]) == (status, error)


def test_other_methods_and_media_types_are_the_gates_too(odoo: Server) -> None:
    url = f"{odoo.url}{WEBHOOK_PATH.format(kind='status')}"
    got = httpx.get(url, params={"token": WEBHOOK_SECRET}, timeout=60)
    assert (got.status_code, _gate_answer(got)["error"]) == (405, "method not allowed")
    # Kolmeya's callbacks are read whatever their Content-Type: this one is read (as a form)
    # and is no callback
    form = post_webhook(odoo, "status", b"id=1", content_type="text/plain")
    assert (form.status_code, _gate_answer(form)["error"]) == (400, "invalid payload")


#: What each configuration answers to a body Odoo 15's JSON-RPC request refuses while it is
#: being built (addons/sms_smskit/README.md says the same): loaded server-wide, the gate's 400;
#: otherwise Odoo answers before the addon can (Werkzeug's HTML 400 for invalid JSON, 500 for
#: the others).
MALFORMED = {
    "not-json": (b"{not json", 400, 400),
    "not-utf8": (b'{"text": "\xff"}', 500, 400),
    "empty-list": (b"[]", 500, 400),
    "json-rpc-lookalike": (b'{"params": 5}', 500, 400),
    "wrong-shape": (b'{"messages": "none"}', 400, 400),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_json_posts(odoo: Server, case: str) -> None:
    body, http_dispatch, server_wide = MALFORMED[case]
    response = post_webhook(odoo, "status", body)
    assert "Traceback" not in response.text
    if odoo.server_wide or case == "wrong-shape":
        answer = _gate_answer(response)
        assert response.status_code == 400
        assert answer["error"] in ("malformed JSON", "invalid payload")
    else:
        assert response.status_code == http_dispatch, response.text[:300]
    assert response.status_code == (server_wide if odoo.server_wide else http_dispatch)


def test_the_simulators_callbacks_reach_sms_message(
        odoo: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    client = odoo.odoorpc()
    sent = client.execute_kw("smskit.bridge", "smskit_send", [phone, "Seu pedido saiu"], {})
    assert sent["state"] == "sent"
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["sent"]
    before = len(simulator.callbacks_sent)
    simulator.advance()
    callbacks = simulator.callbacks_sent[before:]
    assert callbacks, "the simulator posted no callback"
    # 2xx only once committed: the row says delivered as soon as Odoo answered
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["delivered"]
    assert all(c["ok"] for c in callbacks)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_status_callback_posted_as_a_form_is_applied(
        odoo: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str], encoding: str) -> None:
    """What PHP's ``http_build_query`` (Laravel's ``Http::asForm``) makes of Kolmeya's status
    callback, posted as a form: Odoo 15 reads a form body into its own form fields before any
    route runs, which used to leave the gate an empty body (400). Now it is applied, in both
    configurations, and posted again it changes nothing."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    sent = odoo.odoorpc().execute_kw("smskit.bridge", "smskit_send", [phone, "Boleto"], {})
    [kolmeya] = [m for m in simulator.messages.values() if m.phone == phone[3:]]
    fields = [("id", kolmeya.request_id), ("messages[0][id]", kolmeya.id),
              ("messages[0][reference]", sent["message_id"]),
              ("messages[0][status_code]", "4"), ("messages[0][status]", "não entregue")]
    url = f"{odoo.url}{WEBHOOK_PATH.format(kind='status')}"
    for attempt in range(2):
        if encoding == "urlencoded":
            response = httpx.post(url, params={"token": WEBHOOK_SECRET}, data=dict(fields),
                                  timeout=120)
        else:  # every field a part of its own
            response = httpx.post(url, params={"token": WEBHOOK_SECRET}, data=dict(fields),
                                  files={"unused": ("", b"")}, timeout=120)
        body = _gate_answer(response)
        assert response.status_code == 200, body
        assert body["applied"] == (1 if attempt == 0 else 0), body
    [row] = sms_rows(odoo, phone, ["state", "error_message"])
    assert row["state"] == "error" and "não entregue" in (row["error_message"] or ""), row
    simulator.advance()  # its own callback, to this server while it runs (changes nothing)
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["error"]


@contextlib.contextmanager
def _database_refusing_connections(server: Server) -> Iterator[None]:
    """PostgreSQL refuses new connections to the served database (its open ones closed)."""
    odoo = server.odoo
    odoo.psql(f'ALTER DATABASE "{server.db}" CONNECTION LIMIT 0')
    try:
        odoo.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  f"WHERE datname = '{server.db}'")
        yield
    finally:
        odoo.psql(f'ALTER DATABASE "{server.db}" CONNECTION LIMIT -1')
        time.sleep(0.5)


def test_database_unavailable(odoo: Server) -> None:
    reply = {"reply": {"id": 1, "reply": "Oi", "message": {"id": "m", "phone": "11987654321"}}}
    with _database_refusing_connections(odoo):
        response = post_webhook(odoo, "reply", reply, token=WEBHOOK_SECRET)
    if odoo.server_wide:
        _gate_answer(response)
        assert response.status_code == 503 and response.headers.get("Retry-After")
    else:
        # Odoo's no-database routes do not know the webhook: its JSON-RPC 404 (the README
        # says to load the addon server-wide for the 503)
        assert response.status_code == 404
    # and the database back, the next callback is served again
    again = post_webhook(odoo, "status", {}, token=WEBHOOK_SECRET)
    assert again.status_code == 400, again.text[:300]


def test_a_reply_without_an_sms_connector_is_kept_not_a_500(odoo: Server) -> None:
    # the ChatRoom is installed, but nobody made a connector for SMS yet
    assert not odoo.xmlrpc("acrux.chat.connector", "search", [("connector_type", "=", "sms")])
    phone = unique_phone()
    reply = reply_callback(int(phone[-7:]), phone, "Alguém aí?")
    response = post_webhook(odoo, "reply", reply)
    assert response.status_code == 200, response.text[:300]
    assert _gate_answer(response)["new_inbound"] == 1
    [pending] = [op for op in journal(odoo).pending(["acrux"])
                 if op.payload.get("phone") == phone]
    assert "acrux_connector_id" in (pending.last_error or ""), pending
    # once an operator creates the connector, the next run routes the reply (nothing lost)
    connector = odoo.xmlrpc("acrux.chat.connector", "create",
                            {"name": "SMS", "connector_type": "sms"})
    try:
        client = odoo.odoorpc()
        client.execute_kw("ir.cron", "method_direct_trigger",
                          [client.env.ref("sms_smskit.ir_cron_smskit_run").id], {})
        texts = odoo.xmlrpc("acrux.chat.message", "search_read",
                            [("contact_id.number", "=", phone.lstrip("+"))], fields=["text"])
        assert [t["text"] for t in texts] == ["Alguém aí?"]
    finally:
        odoo.xmlrpc("acrux.chat.connector", "unlink", [connector])
