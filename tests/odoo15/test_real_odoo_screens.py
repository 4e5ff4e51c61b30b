"""The SMS app's screens, server side, on a served Odoo 15 (issue 14), called over XML-RPC as
the web client calls them: the messages smskit keeps (state, contact, parts, cost, provider
ids, history) turning delivered with Kolmeya's callback, cancel and resend, the dashboard's
figures, a scheduled send and a campaign run by smskit, the blacklist both ways with its audit,
the retry of a refused Odoo write, the settings, who may do what, and the same screens on
Odoo's stock ``sms.sms`` and with ``--workers 2``.

smskit's store is the served database itself (schema ``smskit``): the screens are SQL views
over it, so what smskit commits is what the next request shows."""

from __future__ import annotations

import datetime as dt
import re
import xmlrpc.client
from typing import Any, Dict, List, Tuple

import odoorpc
import pytest
from odoo15_harness import Server
from odoo15_smskit import configure_kolmeya, journal, unique_phone

from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

PASSWORD = "screens-pw"
#: What Odoo answers a user without the rights (an AccessError, worded per case).
REFUSED = "AccessError|security restrictions|not allowed"


@pytest.fixture(scope="module")
def odoo(odoo_sr: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Server:
    """The users' set-up (sms_base_sr), its smskit on the Kolmeya simulator."""
    configure_kolmeya(odoo_sr, kolmeya_for_odoo[1])
    return odoo_sr


def messages(server: Server, domain: List[Any], fields: List[str]) -> List[Dict[str, Any]]:
    return list(server.xmlrpc("smskit.message", "search_read", domain, fields=fields,
                              order="id"))


def ref(server: Server, xmlid: str) -> int:
    module, name = xmlid.split(".")
    [found] = server.xmlrpc("ir.model.data", "search_read",
                            [("module", "=", module), ("name", "=", name)], fields=["res_id"])
    return int(found["res_id"])


def cron(server: Server) -> None:
    """What Odoo's cron runner does every minute (the tests' servers run no cron)."""
    server.xmlrpc("ir.cron", "method_direct_trigger",
                  [ref(server, "sms_smskit.ir_cron_smskit_run")])


def user(server: Server, login: str, groups: List[str]) -> int:
    ids = [ref(server, g) for g in ("base.group_user", *groups)]
    return int(server.xmlrpc("res.users", "create", {
        "name": login, "login": login, "password": PASSWORD, "groups_id": [(6, 0, ids)]}))


def as_user(server: Server, login: str, model: str, method: str, *args: Any,
            **kwargs: Any) -> Any:
    common = xmlrpc.client.ServerProxy(f"{server.url}/xmlrpc/2/common")
    uid = common.login(server.db, login, PASSWORD)
    proxy = xmlrpc.client.ServerProxy(f"{server.url}/xmlrpc/2/object")
    return proxy.execute_kw(server.db, uid, PASSWORD, model, method, list(args), kwargs)


def test_a_message_turns_delivered_with_kolmeyas_callback(
        odoo: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    partner = odoo.xmlrpc("res.partner", "create", {"name": "Ana Tela", "mobile": phone})
    sent = odoo.xmlrpc("smskit.bridge", "smskit_send", phone, "Seu pedido saiu",
                       partner_id=partner)
    fields = ["state", "partner_id", "segments", "cost", "provider", "provider_message_id",
              "smskit_id", "odoo_record", "event_ids"]
    [row] = messages(odoo, [("phone", "=", phone)], fields)
    assert (row["state"], row["partner_id"][0], row["segments"], row["provider"]) == (
        "sent", partner, 1, "kolmeya")
    assert row["smskit_id"] == sent["message_id"] and row["provider_message_id"]
    assert row["odoo_record"].startswith("sms.message,")
    simulator.advance()  # Kolmeya's delivery report, posted to the addon's webhook URL
    [row] = messages(odoo, [("phone", "=", phone)], fields)
    assert row["state"] == "delivered"
    history = odoo.xmlrpc("smskit.message.event", "read", row["event_ids"],
                          ["new_state", "applied", "provider"])
    assert [(h["new_state"], h["applied"]) for h in history] == [("delivered", True)]


def test_cancel_and_resend(odoo: Server) -> None:
    queued = odoo.xmlrpc("smskit.bridge", "smskit_send", unique_phone(), "Amanhã",
                         at="2030-01-01 12:00:00")
    [row] = messages(odoo, [("smskit_id", "=", queued["message_id"])], ["state", "can_cancel"])
    assert (row["state"], row["can_cancel"]) == ("outgoing", True)
    odoo.xmlrpc("smskit.message", "action_cancel", [row["id"]])
    [row] = messages(odoo, [("id", "=", row["id"])], ["state", "can_resend"])
    assert (row["state"], row["can_resend"]) == ("canceled", True)
    action = odoo.xmlrpc("smskit.message", "action_resend", [row["id"]])
    [again] = messages(odoo, [("id", "=", action["res_id"])], ["state", "tags", "body"])
    assert (again["state"], again["body"]) == ("sent", "Amanhã")
    assert f"resend:{queued['message_id']}" in again["tags"]


def test_the_dashboard_counts_per_day_and_gateway(odoo: Server) -> None:
    def totals() -> Dict[str, Any]:
        [group] = odoo.xmlrpc("smskit.stats", "read_group", [("provider", "=", "kolmeya")],
                              ["sent:sum", "delivered:sum", "rate:avg", "cost:sum"],
                              ["provider"])
        return group

    before = totals()
    odoo.xmlrpc("smskit.bridge", "smskit_send_many", [unique_phone(), unique_phone()], "Oi")
    after = totals()
    assert after["sent"] == before["sent"] + 2
    assert after["rate"] == round(after["delivered"] * 100.0 / after["sent"], 2)
    assert after["cost"] > before["cost"]


def test_a_scheduled_send_to_a_tag(odoo: Server) -> None:
    tag = odoo.xmlrpc("res.partner.category", "create", {"name": "Clientes VIP"})
    phones = [unique_phone(), unique_phone()]
    for n, phone in enumerate(phones):
        odoo.xmlrpc("res.partner", "create", {"name": f"VIP {n}", "mobile": phone,
                                              "category_id": [(6, 0, [tag])]})
    start = (dt.datetime.utcnow() + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    schedule = odoo.xmlrpc("smskit.schedule", "create", {
        "name": "Lembrete mensal", "frequency": "monthly", "start_at": start,
        "audience_type": "tag", "tag_ids": [(6, 0, [tag])], "body": "Oi {{ name }}"})
    odoo.xmlrpc("smskit.schedule", "action_activate", [schedule])
    [row] = odoo.xmlrpc("smskit.schedule", "read", [schedule],
                        ["status", "next_run_at", "upcoming", "rule"])
    assert row["status"] == "active" and row["next_run_at"]
    assert row["rule"].startswith("FREQ=MONTHLY;BYMONTHDAY=")
    assert len(row["upcoming"].splitlines()) == 5
    odoo.xmlrpc("smskit.schedule", "action_run_now", [schedule])
    sent = messages(odoo, [("schedule_id", "=", schedule)], ["phone", "body", "state"])
    assert sorted(m["phone"] for m in sent) == sorted(phones)
    assert {m["state"] for m in sent} == {"sent"}
    odoo.xmlrpc("smskit.schedule", "action_cancel", [schedule])
    [row] = odoo.xmlrpc("smskit.schedule", "read", [schedule], ["status", "next_run_at"])
    assert (row["status"], row["next_run_at"]) == ("canceled", False)


def test_a_campaign_paused_resumed_and_finished(odoo: Server) -> None:
    phones = [unique_phone() for _ in range(3)]
    partners = [odoo.xmlrpc("res.partner", "create", {"name": f"C{n}", "mobile": p})
                for n, p in enumerate(phones)]
    campaign = odoo.xmlrpc("smskit.campaign", "create", {
        "name": "Liquidação", "audience_type": "partners", "partner_ids": [(6, 0, partners)],
        "body": "Liquidação, {{ name }}!"})
    odoo.xmlrpc("smskit.campaign", "action_start", [campaign])
    odoo.xmlrpc("smskit.campaign", "action_pause", [campaign])
    cron(odoo)
    [row] = odoo.xmlrpc("smskit.campaign", "read", [campaign], ["status", "total"])
    assert (row["status"], row["total"]) == ("paused", 0), "a paused campaign stores nothing"
    odoo.xmlrpc("smskit.campaign", "action_resume", [campaign])
    cron(odoo)
    cron(odoo)
    [row] = odoo.xmlrpc("smskit.campaign", "read", [campaign],
                        ["status", "total", "sent", "progress", "rate"])
    assert (row["status"], row["total"], row["sent"], row["progress"]) == ("done", 3, 3, 100.0)
    sent = messages(odoo, [("campaign_id", "=", campaign)], ["phone"])
    assert sorted(m["phone"] for m in sent) == sorted(phones)


def test_the_blacklist_both_ways_with_its_audit(odoo: Server) -> None:
    phone = unique_phone()
    entry = odoo.xmlrpc("smskit.blacklist", "create", {"phone": phone, "reason": "pediu"})
    [row] = odoo.xmlrpc("smskit.blacklist", "read", [entry],
                        ["origin", "user_id", "in_phone_blacklist", "audit_ids"])
    assert (row["origin"], row["user_id"][0], row["in_phone_blacklist"]) == (
        "operator", odoo.uid(), True)
    [pb] = odoo.xmlrpc("phone.blacklist", "search", [("number", "=", phone)])
    odoo.xmlrpc("phone.blacklist", "write", [pb], {"active": False})  # lifted in Odoo: in smskit
    assert not odoo.xmlrpc("smskit.blacklist", "search", [("phone", "=", phone)])
    audit = odoo.xmlrpc("smskit.blacklist.audit", "search_read", [("phone", "=", phone)],
                        fields=["action", "origin"], order="id")
    assert [(a["action"], a["origin"]) for a in audit] == [("add", "operator"),
                                                           ("remove", "odoo")]
    sent = odoo.xmlrpc("smskit.bridge", "smskit_send", phone, "De volta")
    assert sent["state"] == "sent"


def test_a_refused_odoo_write_is_retried_from_the_screen(odoo: Server) -> None:
    phone = unique_phone()
    side = journal(odoo)
    try:
        side.enqueue("blacklist", {"phone": phone, "active": True}, key=f"screen:{phone}")
        [op] = [o for o in side.lease(["blacklist"], "test") if o.payload["phone"] == phone]
        side.attempt([op.id], "Odoo refused it", give_up=True)
        [row] = odoo.xmlrpc("smskit.journal", "read", [op.id], ["status", "last_error"])
        assert (row["status"], row["last_error"]) == ("failed", "Odoo refused it")
        odoo.xmlrpc("smskit.journal", "action_retry", [op.id])
        assert not odoo.xmlrpc("smskit.journal", "search", [("id", "=", op.id)])
        assert odoo.xmlrpc("phone.blacklist", "search", [("number", "=", phone)])
    finally:
        side.close()


def test_settings_and_who_may_change_them(odoo: Server) -> None:
    settings = odoo.xmlrpc("res.config.settings", "create", {"smskit_kolmeya_token": "novo"})
    odoo.xmlrpc("res.config.settings", "execute", [settings])
    [shown] = odoo.xmlrpc("res.config.settings", "read", [
        odoo.xmlrpc("res.config.settings", "create", {})],
        ["smskit_kolmeya_token", "smskit_kolmeya_token_set", "smskit_status_url"])
    assert (shown["smskit_kolmeya_token"], shown["smskit_kolmeya_token_set"]) == (False, True)
    assert shown["smskit_status_url"].startswith(f"{odoo.url}/smskit/webhooks/kolmeya/status")
    odoo.set_params({"smskit.kolmeya_token": "odoo-sim-token"})  # the simulator's again

    user(odoo, "settings-admin", ["base.group_system"])
    created = as_user(odoo, "settings-admin", "res.config.settings", "create",
                      {"smskit_public_url": "https://elsewhere.example.com/smskit"})
    as_user(odoo, "settings-admin", "res.config.settings", "execute", [created])
    assert odoo.xmlrpc("ir.config_parameter", "get_param", "smskit.public_url") == \
        f"{odoo.url}/smskit", "an administrator outside the SMS managers changed nothing"
    client = odoorpc.ODOO("127.0.0.1", port=odoo.port, timeout=120)  # JSON: None is fine
    client.login(odoo.db, "settings-admin", PASSWORD)
    form = client.execute_kw("res.config.settings", "fields_view_get", [],
                             {"view_type": "form"})
    assert re.search(r'data-key="sms_smskit"[^>]*invisible="1"', form["arch"]), \
        "nor sees the SMS block"

    user(odoo, "sms-user", ["sms_smskit.group_smskit_user"])
    sent = odoo.xmlrpc("smskit.bridge", "smskit_send", unique_phone(), "Oi")
    assert as_user(odoo, "sms-user", "smskit.message", "search_count",
                   [("smskit_id", "=", sent["message_id"])]) == 1
    for model, method, args in [
            ("res.config.settings", "create", [{"smskit_public_url": "https://x.example"}]),
            ("smskit.journal", "search", [[]]),
            ("smskit.campaign", "create", [{"name": "x", "body": "x"}])]:
        with pytest.raises(xmlrpc.client.Fault, match=REFUSED):
            as_user(odoo, "sms-user", model, method, *args)


@pytest.fixture(scope="module")
def odoo_stock_sim(odoo_stock: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> Server:
    configure_kolmeya(odoo_stock, kolmeya_for_odoo[1])
    return odoo_stock


def test_the_screens_on_odoos_stock_sms(
        odoo_stock_sim: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    phone = unique_phone()
    odoo_stock_sim.xmlrpc("smskit.bridge", "smskit_send", phone, "Oi")
    kolmeya_for_odoo[0].advance()
    [row] = messages(odoo_stock_sim, [("phone", "=", phone)], ["state", "odoo_record"])
    # the stock sms.sms knows no delivered state; smskit's screen does
    assert row["state"] == "delivered"
    assert row["odoo_record"].startswith("sms.sms,")


def test_two_workers_show_the_same_messages(
        odoo_sr_workers: Server, kolmeya_for_odoo: Tuple[KolmeyaSimulator, str]) -> None:
    configure_kolmeya(odoo_sr_workers, kolmeya_for_odoo[1])
    phones = [unique_phone() for _ in range(6)]
    for phone in phones:  # requests spread over both HTTP workers
        odoo_sr_workers.xmlrpc("smskit.bridge", "smskit_send", phone, "Oi")
        found = messages(odoo_sr_workers, [("phone", "=", phone)], ["state"])
        assert [m["state"] for m in found] == ["sent"]
    assert odoo_sr_workers.xmlrpc("smskit.message", "search_count",
                                  [("phone", "in", phones)]) == len(phones)
