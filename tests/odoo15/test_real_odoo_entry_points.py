"""The addon's entry points as operators and integrations call them on a served Odoo 15:
``smskit.bridge.smskit_send`` over XML-RPC and JSON-RPC, an agent's reply in an SMS ChatRoom
conversation, ``phone.blacklist`` edited in Odoo, and what it costs per request.

Issue 12: RPC-callable methods must return marshallable values (no ``None`` over XML-RPC) and
accept dates as strings; agent-facing errors must be ``UserError`` s; a ``phone.blacklist``
row archived in Odoo must lift smskit's block; the kit must not be rebuilt on every request;
where the users' sms_base_sr already posts a chatter note for a new message, smskit must not
post a second one. And the write of a send's result (``outgoing`` -> ``sent``) logs no tracking
message, as the users' own path (create and write in one transaction) logs none, while a later
change (``sent`` -> ``delivered``) is tracked; ``smskit.odoo_track_sent`` tracks both.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from typing import Any, Dict, List, Tuple

import odoorpc.error
import pytest
from odoo15_harness import Server
from odoo15_smskit import (
    configure_kolmeya,
    post_webhook,
    reply_callback,
    sms_rows,
    unique_phone,
)

from smskit.timeutil import zone
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo


@pytest.fixture(scope="module")
def odoo(odoo_sr: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Server:
    """The served Odoo, its smskit sending through the simulator, one SMS connector."""
    connector = odoo_sr.xmlrpc("acrux.chat.connector", "create",
                               {"name": "SMS", "connector_type": "sms"})
    configure_kolmeya(odoo_sr, kolmeya_for_odoo[1], acrux_connector_id=str(connector))
    return odoo_sr


@pytest.fixture(scope="module")
def connector(odoo: Server) -> int:
    """The SMS connector's id."""
    return int(odoo.xmlrpc("ir.config_parameter", "get_param", "smskit.acrux_connector_id"))


def _rpc_error(exc: Exception) -> Dict[str, Any]:
    """``data`` of an odoorpc JSON-RPC error (``name``: the Odoo exception class)."""
    info = getattr(exc, "info", None) or {}
    return dict(info.get("data") or {})


def test_smskit_send_over_xmlrpc(odoo: Server) -> None:
    phone = unique_phone()
    try:
        result = odoo.xmlrpc("smskit.bridge", "smskit_send", phone, "Olá pelo XML-RPC")
    finally:
        # sent exactly once, whatever the call answered: a caller retrying on the error
        # would send it a second time
        assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["sent"]
    assert result["state"] == "sent" and result["message_id"]


def test_a_scheduled_send_with_a_string_date(odoo: Server) -> None:
    phone = unique_phone()
    client = odoo.odoorpc()
    result = client.execute_kw("smskit.bridge", "smskit_send",
                               [phone, "Lembrete"], {"at": "2030-01-01 12:00:00"})
    assert result["state"] == "outgoing"
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] in ([], ["outgoing"])


def test_a_send_that_falls_due_inside_the_quiet_hours_waits_for_their_end(
        odoo: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    """Queued for a few seconds later while sending was allowed; the quiet hours set since
    cover the moment it falls due: the cron's dispatch puts it back until they end, and
    Kolmeya receives nothing."""
    simulator, _ = kolmeya_for_odoo
    phone = unique_phone()
    due = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=3)
    client = odoo.odoorpc()
    result = client.execute_kw("smskit.bridge", "smskit_send", [phone, "Lembrete"],
                               {"at": due.strftime("%Y-%m-%d %H:%M:%S")})
    assert result["state"] == "outgoing"
    local = due.astimezone(zone("America/Sao_Paulo"))
    start, end = (local - dt.timedelta(hours=1)).hour, (local + dt.timedelta(hours=2)).hour
    odoo.set_params({"smskit.quiet_hours": f"{start:02d}:00-{end:02d}:00"})
    try:
        time.sleep(max(0.0, (due - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 1)
        client.execute_kw("ir.cron", "method_direct_trigger",
                          [client.env.ref("sms_smskit.ir_cron_smskit_run").id], {})
        (row,) = odoo.xmlrpc("smskit.message", "search_read",
                             [("smskit_id", "=", result["message_id"])],
                             ["state", "scheduled_at"])
        assert row["state"] == "outgoing"
        end_local = local.replace(hour=end, minute=0, second=0)
        if end_local <= local:
            end_local += dt.timedelta(days=1)
        assert row["scheduled_at"] == end_local.astimezone(dt.timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S")
        assert result["message_id"] not in simulator.accepted_references()
    finally:
        odoo.set_params({"smskit.quiet_hours": None})


def test_a_reply_finds_the_partner_saved_before_the_ninth_digit(odoo: Server,
                                                                  connector: int) -> None:
    """A customer saved years ago as "(11) 8765-4321" answers from +55 11 98765-4321: the reply
    lands in the ChatRoom on that partner, and no second partner is made."""
    eight = f"{random.randint(8_000_0000, 8_999_9999)}"
    old = odoo.xmlrpc("res.partner", "create",
                      {"name": "Cliente antigo", "mobile": f"(11) {eight[:4]}-{eight[4:]}"})
    phone = f"+55119{eight}"
    reply_id = 700_000 + int(eight[-5:])
    answer = post_webhook(odoo, "reply", reply_callback(reply_id, phone, "Ainda sou cliente"))
    assert answer.status_code == 200, answer.text
    (conversation,) = odoo.xmlrpc("acrux.chat.conversation", "search_read",
                                  [("number", "=", phone.lstrip("+"))], ["res_partner_id"])
    assert conversation["res_partner_id"][0] == old
    halves = [(field, "like", half) for field in ("mobile", "phone")
              for half in (eight[:4], eight[4:])]
    partners = odoo.xmlrpc("res.partner", "search",
                           ["|", "&", halves[0], halves[1], "&", halves[2], halves[3]])
    assert partners == [old]


def test_a_blacklisted_number_is_not_sent(odoo: Server) -> None:
    phone = unique_phone()
    odoo.xmlrpc("phone.blacklist", "create", {"number": phone})
    result = odoo.odoorpc().execute_kw("smskit.bridge", "smskit_send", [phone, "Oferta"], {})
    assert result["state"] in ("canceled", "rejected")
    assert "sent" not in [r["state"] for r in sms_rows(odoo, phone, ["state"])]


@pytest.mark.parametrize("lift", ["archive", "unlink"])
def test_lifting_a_blacklist_row_in_odoo_lifts_the_block(odoo: Server, lift: str) -> None:
    phone = unique_phone()
    client = odoo.odoorpc()
    # the customer answers SAIR: smskit blocks the number and adds it to phone.blacklist
    optout = post_webhook(odoo, "reply", reply_callback(random.randint(10**6, 10**7), phone,
                                                        "SAIR"))
    assert optout.status_code == 200, optout.text
    rows = odoo.xmlrpc("phone.blacklist", "search", [("number", "=", phone)])
    assert len(rows) == 1
    assert client.execute_kw("smskit.bridge", "smskit_send",
                             [phone, "Oferta"], {})["state"] != "sent"
    # the customer asks to hear from us again; an operator lifts the row in Odoo
    if lift == "archive":
        odoo.xmlrpc("phone.blacklist", "write", rows, {"active": False})
    else:
        odoo.xmlrpc("phone.blacklist", "unlink", rows)
    result = client.execute_kw("smskit.bridge", "smskit_send", [phone, "Oferta de novo"], {})
    assert result["state"] == "sent", result


def test_a_bad_number_in_an_agent_reply_is_a_user_error(odoo: Server, connector: int) -> None:
    client = odoo.odoorpc()
    with pytest.raises(odoorpc.error.RPCError) as caught:
        client.execute_kw("acrux.chat.connector", "ca_request",
                          [[connector], "send", {"number": "12ab", "text": "Oi",
                                                 "msgid": "agent-bad-number"}], {})
    error = _rpc_error(caught.value)
    assert error.get("name") == "odoo.exceptions.UserError", error.get("name")
    assert "Traceback" not in str(error.get("message"))


def test_the_kit_is_not_rebuilt_per_request(odoo: Server) -> None:
    client = odoo.odoorpc()
    mark = odoo.log_mark()
    for n in range(3):
        client.execute_kw("smskit.bridge", "smskit_send", [unique_phone(), f"Olá {n}"], {})
    detections = odoo.log_since(mark).count("smskit_odoo.session: Odoo schema ")
    assert detections <= 1, f"the schema was detected {detections} times for 3 sends"



def test_one_message_one_note(odoo: Server) -> None:
    phone = unique_phone()
    partner = odoo.xmlrpc("res.partner", "create", {"name": "Nota Única", "mobile": phone})
    text = f"Uma nota só {random.randint(1000, 9999)}"
    client = odoo.odoorpc()
    assert client.execute_kw("smskit.bridge", "smskit_send", [phone, text], {})["state"] == "sent"
    notes = odoo.xmlrpc("mail.message", "search_read",
                        [("model", "=", "res.partner"), ("res_id", "=", partner),
                         ("message_type", "=", "comment")], fields=["body"])
    about = [n["body"] for n in notes if text in n["body"]]
    assert len(about) == 1, about


def _state_changes(odoo: Server, phone: str) -> List[Tuple[str, str]]:
    """Odoo's tracked changes of the state of ``phone``'s ``sms.message`` row, in order."""
    [row] = sms_rows(odoo, phone, ["id"])
    values = odoo.xmlrpc("mail.tracking.value", "search_read",
                         [("mail_message_id.model", "=", "sms.message"),
                          ("mail_message_id.res_id", "=", row["id"]),
                          ("field.name", "=", "state")],
                         fields=["old_value_char", "new_value_char"], order="id")
    return [(v["old_value_char"], v["new_value_char"]) for v in values]


def test_the_send_result_is_not_tracked_a_delivery_is(
        odoo: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    phone = unique_phone()
    client = odoo.odoorpc()
    assert client.execute_kw("smskit.bridge", "smskit_send", [phone, "Rastreio"],
                             {})["state"] == "sent"
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["sent"]
    assert _state_changes(odoo, phone) == []
    kolmeya_for_odoo[0].advance()  # the simulator posts the delivery report to the webhook
    assert [r["state"] for r in sms_rows(odoo, phone, ["state"])] == ["delivered"]
    assert _state_changes(odoo, phone) == [("Sent", "Delivered")]


def test_odoo_track_sent_tracks_the_send_result(odoo: Server) -> None:
    odoo.set_params({"smskit.odoo_track_sent": "True"})  # what the settings checkbox stores
    try:
        phone = unique_phone()
        assert odoo.odoorpc().execute_kw("smskit.bridge", "smskit_send", [phone, "Rastreio"],
                                         {})["state"] == "sent"
        assert _state_changes(odoo, phone) == [("Outgoing", "Sent")]
    finally:
        odoo.set_params({"smskit.odoo_track_sent": None})
