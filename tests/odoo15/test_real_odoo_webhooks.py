"""Kolmeya's callbacks posted to the addon's webhook URL on a served Odoo 15, exactly as
Kolmeya (and the simulator) sends them: ``POST``, ``Content-Type: application/json``, the
token in the query.

Issue 12: Odoo 15 hands every ``application/json`` POST to its JSON-RPC dispatcher before the
``type="http"`` route runs, so the caller gets HTTP 200 with a JSON-RPC error body whatever
the token; every callback is lost and the gateway never retries. The answers must come from
smskit's webhook gate instead: 2xx only once the write is committed, 401/403 without or with
a wrong token, 4xx for malformed input, 503 + Retry-After when the database is unavailable.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Tuple

import httpx
import pytest
from odoo15_harness import Server
from odoo15_smskit import (
    WEBHOOK_SECRET,
    configure_kolmeya,
    post_webhook,
    sms_rows,
    unique_phone,
)

from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

JSON_RPC_200 = "issue 12: Odoo 15 answers a JSON POST to the type='http' webhook route itself " \
               "(HTTP 200, JSON-RPC error body)"


@pytest.fixture(scope="module")
def odoo(odoo_sr: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Server:
    """The served Odoo, its smskit sending through the simulator."""
    configure_kolmeya(odoo_sr, kolmeya_for_odoo[1])
    return odoo_sr


def _gate_answer(response: httpx.Response) -> Any:
    """The JSON body smskit's gate answers with (never a JSON-RPC envelope)."""
    body = response.json()
    assert "jsonrpc" not in body, f"Odoo's JSON-RPC dispatcher answered: {response.text[:300]}"
    return body


@pytest.mark.xfail(strict=True, reason=JSON_RPC_200)
def test_the_issue_curl_reaches_the_gate(odoo: Server) -> None:
    # curl -X POST -H 'Content-Type: application/json' -d '{}' .../status?token=<secret>
    response = post_webhook(odoo, "status", {})
    body = _gate_answer(response)
    assert response.status_code == 400 and body["error"] == "invalid payload"


@pytest.mark.parametrize(("token", "status", "error"), [
    pytest.param(None, 401, "unauthorized", marks=pytest.mark.xfail(strict=True,
                                                                    reason=JSON_RPC_200)),
    pytest.param("wrong", 403, "forbidden", marks=pytest.mark.xfail(strict=True,
                                                                   reason=JSON_RPC_200)),
])
def test_json_posts_without_the_secret_are_refused(odoo: Server, token: Any, status: int,
                                                   error: str) -> None:
    response = post_webhook(odoo, "status", {"id": "x", "messages": []}, token=token)
    assert (response.status_code, _gate_answer(response)["error"]) == (status, error)


@pytest.mark.parametrize("body", [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b'{"text": "\xff"}', id="not-utf8"),
    pytest.param(b"[]", id="empty-list"),
    pytest.param(b'{"params": 5}', id="json-rpc-lookalike"),
    pytest.param(b'{"messages": "none"}', id="wrong-shape"),
])
@pytest.mark.xfail(strict=True, reason="issue 12: Odoo 15 answers malformed JSON posts itself "
                                       "(HTML 400, 500, or 200 + JSON-RPC error)")
def test_malformed_json_posts_are_a_400_from_the_gate(odoo: Server, body: bytes) -> None:
    response = post_webhook(odoo, "status", body)
    answer = _gate_answer(response)
    assert response.status_code == 400 and answer["error"] in ("malformed JSON",
                                                               "invalid payload")


@pytest.mark.xfail(strict=True, reason=JSON_RPC_200 + ": the simulator's callbacks are lost")
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


@pytest.mark.xfail(strict=True, reason="issue 12: with its database unavailable Odoo 15 answers "
                                       "404 + a JSON-RPC error body and a traceback")
def test_database_unavailable_is_a_503_with_retry_after(odoo: Server) -> None:
    reply = {"reply": {"id": 1, "reply": "Oi", "message": {"id": "m", "phone": "11987654321"}}}
    with _database_refusing_connections(odoo):
        response = post_webhook(odoo, "reply", reply, token=WEBHOOK_SECRET)
    assert "Traceback" not in response.text
    assert response.status_code == 503 and response.headers.get("Retry-After")
