"""The addon under concurrent webhooks, on a served Odoo 15 running ``--workers 2``.

Odoo runs each request in one REPEATABLE READ transaction: a search made after the snapshot
does not see what another request committed meanwhile, and a concurrent update raises
"could not serialize access". Issue 12: parallel replies from one new number made two
partners, put a reply twice into the ChatRoom and lost one; a transient serialization failure
marked a pending Odoo write failed for good.

The callbacks are posted as Kolmeya posts them (``application/json``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

import httpx
import psycopg
import pytest
from odoo15_harness import Server
from odoo15_smskit import (
    configure_kolmeya,
    journal,
    post_webhook,
    reply_callback,
    sms_rows,
    store_url,
    unique_phone,
)

from smskit.models import InboundMessage
from smskit.store.sql import SqlStore
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

#: Replies per new number, each delivered twice (Kolmeya retries; webhooks may duplicate).
REPLIES = 4
DELIVERIES = 2
ROUNDS = 3


@pytest.fixture(scope="module")
def odoo(odoo_sr_workers: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Server:
    """The served Odoo (two HTTP workers), its smskit on the simulator, one SMS connector."""
    configure_kolmeya(odoo_sr_workers, kolmeya_for_odoo[1])
    odoo_sr_workers.xmlrpc("acrux.chat.connector", "create",
                           {"name": "SMS", "connector_type": "sms"})
    return odoo_sr_workers


def _post_together(server: Server, bodies: List[Dict[str, Any]]) -> List[httpx.Response]:
    """POST every body at once (released together by a barrier)."""
    barrier = threading.Barrier(len(bodies))

    def post(body: Dict[str, Any]) -> httpx.Response:
        with httpx.Client(timeout=120) as client:
            barrier.wait()
            return post_webhook(server, "reply", body, client=client)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_parallel_replies_from_one_new_number(odoo: Server) -> None:
    problems: List[str] = []
    for round_ in range(ROUNDS):
        phone = unique_phone()
        first_id = 1000 * (round_ + 1) + int(phone[-4:]) * 10
        replies = [reply_callback(first_id + n, phone, f"resposta {n}") for n in range(REPLIES)]
        responses = _post_together(odoo, replies * DELIVERIES)
        statuses = sorted(r.status_code for r in responses)
        if any(not 200 <= s < 300 for s in statuses):
            problems.append(f"{phone}: answers {statuses}")
        digits = phone.lstrip("+")
        partners = odoo.xmlrpc("res.partner", "search_read",
                               ["|", ("mobile", "like", digits[-8:]),
                                ("phone", "like", digits[-8:])], fields=["name"])
        conversations = odoo.xmlrpc("acrux.chat.conversation", "search_read",
                                    [("number", "=", digits)], fields=["res_partner_id"])
        messages = odoo.xmlrpc("acrux.chat.message", "search_read",
                               [("contact_id.number", "=", digits)], fields=["msgid"])
        msgids = sorted(m["msgid"] for m in messages)
        if len(partners) != 1:
            problems.append(f"{phone}: {len(partners)} partners")
        if len(conversations) != 1:
            problems.append(f"{phone}: {len(conversations)} conversations")
        if msgids != sorted(set(msgids)) or len(msgids) != REPLIES:
            problems.append(f"{phone}: ChatRoom messages {msgids}")
        incoming = [r for r in sms_rows(odoo, phone, ["direction"])
                    if r["direction"] == "incoming"]
        if len(incoming) != REPLIES:
            problems.append(f"{phone}: {len(incoming)} incoming sms.message rows")
    failed = journal(odoo).failed()
    if failed:
        problems.append(f"journal: {len(failed)} Odoo writes given up: "
                        f"{[f.last_error for f in failed][:3]}")
    assert not problems, "; ".join(problems)


def test_a_reply_stored_by_a_process_that_died_reaches_the_chatroom_on_its_retry(
        odoo: Server) -> None:
    """The Odoo process that took a reply's first delivery stored it in smskit's store and
    died before anything else (no link, no sms.message row, no ChatRoom op): Kolmeya, which
    got no answer, delivers it again. The retry finds it stored and finishes the rest."""
    phone = unique_phone()
    reply_id = 7_000_000 + int(phone[-6:])
    store = SqlStore(store_url(odoo))
    try:  # what the dead process wrote, and nothing more
        first = store.record_inbound(InboundMessage(
            provider="kolmeya", provider_reply_id=str(reply_id), phone=phone,
            body="Chegou quebrado"))
    finally:
        store.close()
    assert first.created
    digits = phone.lstrip("+")

    def chatroom() -> List[str]:
        return [m["text"] for m in odoo.xmlrpc(
            "acrux.chat.message", "search_read", [("contact_id.number", "=", digits)],
            fields=["text"])]

    assert chatroom() == []
    for delivery in range(2):  # Kolmeya's retry, then one more (nothing happens twice)
        response = post_webhook(odoo, "reply", reply_callback(reply_id, phone,
                                                               "Chegou quebrado"))
        assert response.status_code == 200, response.text[:300]
        assert response.json()["new_inbound"] == 0, delivery
        assert chatroom() == ["Chegou quebrado"], delivery
    incoming = [r for r in sms_rows(odoo, phone, ["direction"]) if r["direction"] == "incoming"]
    assert len(incoming) == 1
    assert journal(odoo).failed() == []


def _wait_for_lock_waiter(dsn: str, db: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'", (db,)).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("Odoo never waited for the locked sms.message row")


def _delivered_callback(row: Dict[str, Any]) -> Dict[str, Any]:
    """Kolmeya's status callback saying the message of this ``sms.message`` row arrived."""
    return {"id": row["provider_job_id"], "reference": None,
            "messages": [{"id": row["provider_message_id"],
                          "reference": row["provider_reference"],
                          "status_code": 3, "status": "entregue"}]}


def test_a_serialization_failure_is_not_given_up(odoo: Server) -> None:
    phone = unique_phone()
    client = odoo.odoorpc()
    assert client.execute_kw("smskit.bridge", "smskit_send", [phone, "Oi"], {})["state"] == "sent"
    [row] = sms_rows(odoo, phone, ["state", "provider_job_id", "provider_message_id",
                                   "provider_reference"])
    assert row["provider_message_id"], row
    dsn = (f"host={odoo.odoo.pg_host} port={odoo.odoo.pg_port} "
           f"user={odoo.odoo.pg_superuser} dbname={odoo.db}")
    # Another transaction (an operator's edit, another worker) updates the row and commits
    # while the delivered callback's write waits for it: Odoo's REPEATABLE READ transaction
    # then fails with "could not serialize access due to concurrent update".
    with psycopg.connect(dsn) as other:
        other.execute("UPDATE sms_message SET cost = coalesce(cost, 0) WHERE id = %s",
                      (row["id"],))
        with ThreadPoolExecutor(1) as pool:
            mark = odoo.log_mark()
            delivered = pool.submit(post_webhook, odoo, "status", _delivered_callback(row))
            _wait_for_lock_waiter(dsn, odoo.db)
            other.commit()
            answer = delivered.result(timeout=120)
    # written in a fresh transaction within the same request, and the retry says so
    assert answer.status_code == 200, answer.text
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["delivered"]
    assert "could not serialize access" in odoo.log_since(mark)
    assert "trying again in a fresh transaction" in odoo.log_since(mark)
    # and nothing is given up: a later run has nothing to repair
    client.execute_kw("ir.cron", "method_direct_trigger",
                      [client.env.ref("sms_smskit.ir_cron_smskit_run").id], {})
    assert journal(odoo).failed() == []
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["delivered"]


def test_a_reply_reaches_the_agents_longpolling_client(odoo: Server) -> None:
    """In ``--workers`` mode bus notifications (the ChatRoom's live updates) go through the
    longpolling process, which runs on gevent: with the gevent Odoo 15 pins and the greenlet
    smskit's SQLAlchemy needs, it could not start (the odoo-addon extra installs a pair that
    works). An agent with the conversation open gets the reply while polling."""
    assert odoo.longpolling_port
    phone = unique_phone()
    digits = phone.lstrip("+")
    agent = odoo.uid()
    [connector] = odoo.xmlrpc("acrux.chat.connector", "search", [("connector_type", "=", "sms")])
    odoo.xmlrpc("acrux.chat.conversation", "create", {
        "name": "Cliente", "number": digits, "connector_id": connector, "status": "current",
        "agent_id": agent})
    with httpx.Client(timeout=90) as web:
        login = web.post(f"{odoo.url}/web/session/authenticate", json={
            "jsonrpc": "2.0", "method": "call",
            "params": {"db": odoo.db, "login": "admin", "password": "admin"}})
        assert login.json().get("result", {}).get("uid") == agent, login.text[:300]
        session = login.cookies["session_id"]
        last = int(odoo.odoo.psql("SELECT coalesce(max(id), 0) FROM bus_bus", db=odoo.db))

        def wanted(notification: Dict[str, Any]) -> bool:
            message = notification["message"]
            return (message["type"] == "new_messages"
                    and message["payload"].get("text") == "Oi, ainda tem?")

        def poll(since: int) -> List[Dict[str, Any]]:
            """Poll as the web client does until the reply's notification comes (or 60 s)."""
            seen: List[Dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(wanted(n) for n in seen):
                answer = httpx.post(
                    f"http://127.0.0.1:{odoo.longpolling_port}/longpolling/poll",
                    json={"jsonrpc": "2.0", "method": "call",
                          "params": {"channels": [], "last": since, "options": {}}},
                    headers={"Cookie": f"session_id={session}"}, timeout=90).json()
                got = answer.get("result")
                assert isinstance(got, list), answer
                seen += got
                since = max([since] + [int(n["id"]) for n in got])
            return seen

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(poll, last)
            time.sleep(1.0)  # the poll is waiting for notifications
            reply = reply_callback(int(digits[-7:]), phone, "Oi, ainda tem?")
            assert post_webhook(odoo, "reply", reply).status_code == 200
            notifications = waiting.result(timeout=90)
    assert any(wanted(n) for n in notifications), notifications
