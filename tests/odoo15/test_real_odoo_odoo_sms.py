"""Odoo's own SMS goes through smskit, in a served Odoo 15, against the Kolmeya simulator
(issue 14, items 1 and 4).

* The stock "Send SMS" composer on a partner (over RPC, as the button does) sends through the
  simulator; the simulator's delivery callback, posted to the addon's webhook URL, turns the
  chatter notification delivered, or failed (``bounce``) with the reason; on the users'
  schema (``sms_base_sr``) and on stock ``sms.sms``.
* A ``mass_mailing_sms`` mailing to N partners goes out from Odoo's SMS queue in batches
  (``sms.session.batch.size``), one gateway request each; its traces and the mailing's
  statistics count what the simulator reports delivered and bounced.
* A batch Odoo sends again (``sms.sms.send()`` of sent rows, ``_send_sms_batch`` called again
  after a crash) sends nothing twice.
* Every test SMS of a mailing (``mailing.sms.test``, whose ``res_id`` is the number) goes out,
  the second to the same number too, and each is logged on the mailing.
* Odoo running a request again after a concurrent update sends the SMS once, with one
  chatter message: the gateway is called after the commit; SMS held by a process that died
  right after its commit go out with Odoo's SMS queue, once.
* An agent's reply in an SMS ChatRoom conversation goes out, shows its delivery state, and a
  blacklisted number is refused in the agent's language with nothing kept.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from odoo15_harness import Server
from odoo15_smskit import configure_kolmeya, unique_phone

from smskit_kolmeya.testing.simulator import KolmeyaSimulator

pytestmark = pytest.mark.real_odoo

Sim = Tuple[KolmeyaSimulator, str]


def _national(phone: str) -> str:
    return phone[3:]


@pytest.fixture(scope="module", params=["sr", "stock"])
def odoo(request: pytest.FixtureRequest, odoo_servers: Any,
         kolmeya_for_odoo: Sim) -> Iterator[Server]:
    """A served Odoo (the users' schema, then stock sms.sms) sending through the simulator."""
    server = odoo_servers.start(request.param)
    try:
        configure_kolmeya(server, kolmeya_for_odoo[1])
        yield server
    finally:
        odoo_servers.stop(server)


def _partner(server: Server, phone: str, name: str = "Cliente") -> int:
    return int(server.xmlrpc("res.partner", "create", {"name": name, "mobile": phone}))


def _compose(server: Server, partner: int, body: str) -> Dict[str, Any]:
    """The partner's "Send SMS" button: the composer, over RPC; its SMS notification."""
    context = {"active_model": "res.partner", "active_id": partner}
    composer = server.xmlrpc("sms.composer", "create", {"body": body}, context=context)
    server.xmlrpc("sms.composer", "action_send_sms", [composer], context=context)
    [notification] = server.xmlrpc(
        "mail.notification", "search_read",
        [("res_partner_id", "=", partner), ("notification_type", "=", "sms")],
        fields=["notification_status", "failure_type", "failure_reason", "sms_id",
                "mail_message_id"], order="id desc", limit=1)
    return dict(notification)


def _notification(server: Server, notification_id: int) -> Dict[str, Any]:
    [row] = server.xmlrpc("mail.notification", "read", [notification_id],
                          ["notification_status", "failure_type", "failure_reason"])
    return dict(row)


def _sim_messages(simulator: KolmeyaSimulator, phone: str) -> List[Any]:
    return [m for m in simulator.messages.values() if m.phone == _national(phone)]


def test_the_stock_composer_sends_through_kolmeya_and_hears_back(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    simulator = kolmeya_for_odoo[0]
    delivered_phone, lost_phone = unique_phone(), unique_phone()
    simulator.configure(forced_outcomes={_national(lost_phone): 4})
    delivered = _compose(odoo, _partner(odoo, delivered_phone, "Ana"), "Seu pedido saiu")
    lost = _compose(odoo, _partner(odoo, lost_phone, "Bia"), "Seu pedido saiu")
    for notification, phone in ((delivered, delivered_phone), (lost, lost_phone)):
        assert notification["notification_status"] == "pending"  # Sent, no report yet
        [sent] = _sim_messages(simulator, phone)
        assert sent.body == "Seu pedido saiu"
    [row] = odoo.xmlrpc("sms.sms", "read", [delivered["sms_id"][0]],
                        ["state", "smskit_state", "smskit_message_id"])
    assert (row["state"], row["smskit_state"]) == ("sent", "sent") and row["smskit_message_id"]
    simulator.advance()  # the simulator posts its callbacks to the addon's webhook URL
    assert _notification(odoo, delivered["id"])["notification_status"] == "sent"
    failed = _notification(odoo, lost["id"])
    assert (failed["notification_status"], failed["failure_type"]) == (
        "bounce", "sms_not_delivered")
    assert failed["failure_reason"] == "não entregue"
    [row] = odoo.xmlrpc("sms.sms", "read", [lost["sms_id"][0]],
                        ["state", "smskit_state", "smskit_reason"])
    assert (row["state"], row["smskit_state"], row["smskit_reason"]) == (
        "error", "error", "não entregue")
    if odoo.db.startswith("odoo_t_sr"):
        # the users' SMS list has it too, one row, and the partner's chatter no second note
        rows = odoo.xmlrpc("sms.message", "search_read", [("phone", "=", lost_phone)],
                           fields=["state", "partner_id"])
        assert [r["state"] for r in rows] == ["error"] and rows[0]["partner_id"]
    notes = odoo.xmlrpc("mail.message", "search_count", [
        ("model", "=", "res.partner"), ("res_id", "=", lost["mail_message_id"][0]),
        ("message_type", "=", "comment")])
    assert notes == 0


def test_a_batch_sent_again_sends_nothing_twice(odoo: Server, kolmeya_for_odoo: Sim) -> None:
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    notification = _compose(odoo, _partner(odoo, phone), "Lembrete")
    sms_id = notification["sms_id"][0]
    # Odoo sending the row again (its queue, a resend), and a batch retried after a crash
    # between the gateway's answer and Odoo's commit: the same message, never a second SMS
    odoo.odoorpc().execute_kw("sms.sms", "send", [[sms_id]], {})  # answers None: JSON-RPC
    shell = odoo.shell(f"""
sms = env["sms.sms"].browse({sms_id})
print("ANSWER", env["sms.api"]._send_sms_batch(
    [{{"res_id": sms.id, "number": sms.number, "content": sms.body}}]))
env.cr.commit()
""")
    assert "'state': 'success'" in shell.stdout, shell.stdout[-2000:] + shell.stderr[-2000:]
    assert len(_sim_messages(simulator, phone)) == 1
    assert simulator.stats()["accepted_twice"] == 0


def test_retrying_a_failed_sms_sends_it_again_once(odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """Technical > SMS > Retry on a row whose SMS Kolmeya could not deliver: a new SMS goes
    out (after the commit), the row and its notification follow it, and a second Retry,
    the row no longer failed, sends nothing."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    forced = dict(simulator.config.forced_outcomes)
    simulator.configure(forced_outcomes={**forced, _national(phone): 4})
    notification = _compose(odoo, _partner(odoo, phone), "Seu boleto vence amanhã")
    simulator.advance()
    sms_id = notification["sms_id"][0]
    [row] = odoo.xmlrpc("sms.sms", "read", [sms_id], ["state", "smskit_message_id"])
    assert row["state"] == "error"
    failed = row["smskit_message_id"]
    simulator.configure(forced_outcomes=forced)
    answer = odoo.xmlrpc("sms.sms", "resend_failed", [sms_id])
    assert answer["params"]["type"] == "success", answer
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Seu boleto vence amanhã"] * 2
    [row] = odoo.xmlrpc("sms.sms", "read", [sms_id], ["state", "smskit_message_id"])
    assert row["state"] == "sent" and row["smskit_message_id"] not in (False, failed)
    assert _notification(odoo, notification["id"])["notification_status"] == "pending"
    again = odoo.xmlrpc("sms.sms", "resend_failed", [sms_id])
    assert again["params"]["type"] == "danger"
    assert len(_sim_messages(simulator, phone)) == 2
    simulator.advance()
    assert _notification(odoo, notification["id"])["notification_status"] == "sent"


def _sms_chatter(server: Server, partner: int) -> List[Dict[str, Any]]:
    """The SMS messages on the partner's chatter."""
    return list(server.xmlrpc("mail.message", "search_read", [
        ("model", "=", "res.partner"), ("res_id", "=", partner),
        ("message_type", "=", "sms")], fields=["body"]))


def _param(server: Server, key: str) -> Any:
    return server.xmlrpc("ir.config_parameter", "get_param", key)


def test_a_send_odoo_runs_again_after_a_conflict_goes_out_once(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """Odoo runs a request again when PostgreSQL reports a concurrent update (a delivery
    report racing the send, say). The SMS goes to Kolmeya only once the request's transaction
    has committed, so the run that was rolled back sent nothing: one SMS, one chatter
    message (before, each run sent one, and the first run's message stayed committed)."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    partner = _partner(odoo, phone)
    odoo.set_params({"smskit_probe.conflict": "1"})  # smskit_conflict_probe (tests/odoo)
    notification = _compose(odoo, partner, "Seu boleto vence amanhã")
    assert _param(odoo, "smskit_probe.conflict") == "0"  # the conflict happened, once
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Seu boleto vence amanhã"]
    assert len(_sms_chatter(odoo, partner)) == 1
    assert notification["notification_status"] == "pending"  # sent, no report yet
    [row] = odoo.xmlrpc("sms.sms", "read", [notification["sms_id"][0]],
                        ["state", "smskit_state", "smskit_message_id"])
    assert (row["state"], row["smskit_state"]) == ("sent", "sent") and row["smskit_message_id"]
    simulator.advance()
    assert _notification(odoo, notification["id"])["notification_status"] == "sent"
    assert simulator.stats()["accepted_twice"] == 0


def test_your_codes_smskit_send_in_a_request_odoo_runs_again_sends_once(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """Your own Odoo code calls ``smskit_send``, then a write of its meets a concurrent
    update: Odoo rolls the request back and runs it again. The SMS went on the first run;
    the second run's call answers that SMS instead of sending another."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    odoo.set_params({"smskit_probe.conflict": "1"})
    answer = odoo.xmlrpc("smskit.bridge", "smskit_probe_send_then_write", phone,
                         "Seu pedido foi faturado")
    assert _param(odoo, "smskit_probe.conflict") == "0"
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Seu pedido foi faturado"]
    assert answer["state"] == "sent" and answer["message_id"]
    # a later call is a new SMS
    odoo.xmlrpc("smskit.bridge", "smskit_probe_send_then_write", phone,
                "Seu pedido foi faturado")
    assert len(_sim_messages(simulator, phone)) == 2


def test_numbers_mode_odoo_runs_again_after_a_conflict_goes_out_once(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """The composer's "numbers" mode sends without an ``sms.sms`` row, at once: when Odoo
    runs the request again after a conflict, the second run takes the first run's answer
    instead of sending again."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    odoo.set_params({"smskit_probe.conflict": "1"})
    composer = odoo.xmlrpc("sms.composer", "create", {
        "composition_mode": "numbers", "numbers": phone, "body": "Código: 4821"})
    odoo.xmlrpc("sms.composer", "action_send_sms", [composer])
    assert _param(odoo, "smskit_probe.conflict") == "0"
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Código: 4821"]
    # a later send of the same text to the same number is a new SMS
    composer = odoo.xmlrpc("sms.composer", "create", {
        "composition_mode": "numbers", "numbers": phone, "body": "Código: 4821"})
    odoo.xmlrpc("sms.composer", "action_send_sms", [composer])
    assert len(_sim_messages(simulator, phone)) == 2


def test_sms_held_by_a_process_that_died_after_its_commit_go_out_with_the_crons(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """The process dies between the request's commit and the hand-over to smskit: the row
    stays outgoing, its notification ready, nothing was sent. smskit's cron (every minute)
    sends it once it has waited ten minutes; Odoo's SMS queue (its hourly cron) sends
    nothing more, however often they run."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    partner = _partner(odoo, phone)
    odoo.set_params({"smskit_probe.die_after_commit": "1"})
    notification = _compose(odoo, partner, "Sua consulta é amanhã às 9h")
    assert _param(odoo, "smskit_probe.die_after_commit") == "0"
    assert notification["notification_status"] == "ready"
    [row] = odoo.xmlrpc("sms.sms", "read", [notification["sms_id"][0]],
                        ["state", "smskit_message_id"])
    assert (row["state"], row["smskit_message_id"]) == ("outgoing", False)
    assert _sim_messages(simulator, phone) == []

    def run_cron(module: str, name: str) -> None:
        [cron] = odoo.xmlrpc("ir.model.data", "search_read", [
            ("module", "=", module), ("name", "=", name)], fields=["res_id"])
        odoo.xmlrpc("ir.cron", "method_direct_trigger", [cron["res_id"]])

    run_cron("sms_smskit", "ir_cron_smskit_run")  # too early: it may still be handed over
    assert _sim_messages(simulator, phone) == []
    odoo.odoo.psql("UPDATE sms_sms SET create_date = create_date - interval '11 minutes' "
                   f"WHERE id = {int(row['id'])}", db=odoo.db)
    run_cron("sms_smskit", "ir_cron_smskit_run")
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Sua consulta é amanhã às 9h"]
    run_cron("sms_smskit", "ir_cron_smskit_run")
    run_cron("sms", "ir_cron_sms_scheduler_action")
    assert len(_sim_messages(simulator, phone)) == 1
    assert _notification(odoo, notification["id"])["notification_status"] == "pending"
    [row] = odoo.xmlrpc("sms.sms", "read", [notification["sms_id"][0]],
                        ["state", "smskit_message_id"])
    assert row["state"] == "sent" and row["smskit_message_id"]
    assert len(_sms_chatter(odoo, partner)) == 1


def _sms_conversation(server: Server, phone: str, name: str) -> Tuple[int, int]:
    """The SMS ChatRoom connector (made if there is none) and a new conversation with
    ``phone``, taken by the admin: ``(connector id, conversation id)``."""
    found = server.xmlrpc("acrux.chat.connector", "search", [("connector_type", "=", "sms")])
    connector = found[0] if found else server.xmlrpc(
        "acrux.chat.connector", "create", {"name": "SMS", "connector_type": "sms"})
    conversation = server.xmlrpc("acrux.chat.conversation", "create", {
        "name": name, "number": phone.lstrip("+"), "connector_id": connector,
        "status": "current", "agent_id": server.uid()})
    return int(connector), int(conversation)


def test_an_agent_reply_goes_out_and_shows_its_delivery(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    connector, conversation = _sms_conversation(odoo, phone, "Ana")
    message = odoo.xmlrpc("acrux.chat.conversation", "send_message", [conversation],
                          {"text": "Chega amanhã", "ttype": "text"})
    [sent] = _sim_messages(simulator, phone)
    assert sent.body == "Chega amanhã"
    simulator.advance()
    [row] = odoo.xmlrpc("acrux.chat.message", "read", [message],
                        ["smskit_state", "error_msg", "msgid"])
    assert (row["smskit_state"], row["error_msg"]) == ("delivered", False) and row["msgid"]
    counts = odoo.xmlrpc("acrux.chat.connector", "read", [connector],
                         ["smskit_sent_count", "smskit_received_count"])[0]
    assert counts["smskit_sent_count"] >= 1


def test_an_agent_reply_odoo_runs_again_after_a_conflict_goes_out_once(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    """The customer's next SMS (or a delivery report) updates the conversation while the
    agent's reply is being sent: Odoo rolls the agent's request back and runs it again. The
    second run finds the SMS the first one sent: one SMS, one agent message in the
    conversation, which follows its delivery."""
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    _, conversation = _sms_conversation(odoo, phone, "Ana")
    odoo.set_params({"smskit_probe.conflict": "1"})
    message = odoo.xmlrpc("acrux.chat.conversation", "send_message", [conversation],
                          {"text": "Já enviamos", "ttype": "text"})
    assert _param(odoo, "smskit_probe.conflict") == "0"
    assert [m.body for m in _sim_messages(simulator, phone)] == ["Já enviamos"]
    mine = odoo.xmlrpc("acrux.chat.message", "search_read", [
        ("contact_id", "=", conversation), ("from_me", "=", True)], fields=["msgid"])
    assert [m["id"] for m in mine] == [message] and mine[0]["msgid"]
    simulator.advance()
    [row] = odoo.xmlrpc("acrux.chat.message", "read", [message], ["smskit_state", "error_msg"])
    assert (row["smskit_state"], row["error_msg"]) == ("delivered", False)


def test_a_blacklisted_customer_is_refused_in_the_agents_language(
        odoo: Server, kolmeya_for_odoo: Sim) -> None:
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    odoo.xmlrpc("phone.blacklist", "create", {"number": phone})
    _, conversation = _sms_conversation(odoo, phone, "Bia")
    # Portuguese installed as an operator does (Settings > Languages): the addons' pt_BR.po
    wizard = odoo.xmlrpc("base.language.install", "create", {"lang": "pt_BR"})
    odoo.xmlrpc("base.language.install", "lang_install", [wizard])
    for lang, words in (("en_US", "is on the blacklist"), ("pt_BR", "lista negra")):
        with pytest.raises(xmlrpc.client.Fault) as caught:
            odoo.xmlrpc("acrux.chat.conversation", "send_message", [conversation],
                        {"text": "Oi", "ttype": "text"}, context={"lang": lang})
        assert words in caught.value.faultString
    assert _sim_messages(simulator, phone) == []
    assert odoo.xmlrpc("acrux.chat.message", "search_count",
                       [("contact_id", "=", conversation)]) == 0


# -- a mass_mailing_sms mailing ----------------------------------------------------------------

N = 24
BATCH = 10


@pytest.fixture(scope="module")
def mass(odoo_mass: Server, kolmeya_for_odoo: Sim) -> Server:
    configure_kolmeya(odoo_mass, kolmeya_for_odoo[1])
    odoo_mass.set_params({"sms.session.batch.size": str(BATCH)})
    return odoo_mass


def test_a_mailing_goes_in_batches_and_counts_delivered_and_bounced(
        mass: Server, kolmeya_for_odoo: Sim) -> None:
    simulator = kolmeya_for_odoo[0]
    phones = [unique_phone() for _ in range(N)]
    not_delivered, expired = phones[:3], phones[3:5]
    simulator.configure(forced_outcomes={
        **{_national(p): 4 for p in not_delivered}, **{_national(p): 6 for p in expired}})
    partners = [_partner(mass, phone, f"Cliente {i}") for i, phone in enumerate(phones)]
    model = mass.xmlrpc("ir.model", "search", [("model", "=", "res.partner")])[0]
    mailing = mass.xmlrpc("mailing.mailing", "create", {
        "name": "Promoção", "subject": "Promoção", "mailing_type": "sms",
        "body_plaintext": "Promoção de dezembro", "mailing_model_id": model,
        "mailing_domain": repr([("id", "in", partners)]), "keep_archives": False})
    requests_before = simulator.stats()["requests"]
    mass.xmlrpc("mailing.mailing", "action_send_sms", [mailing])
    # the SMS wait in Odoo's queue; its cron sends them, BATCH at a time
    client = mass.odoorpc()
    client.execute_kw("ir.cron", "method_direct_trigger",
                      [client.env.ref("sms.ir_cron_sms_scheduler_action").id], {})
    assert simulator.stats()["requests"] - requests_before == -(-N // BATCH)
    assert sum(len(_sim_messages(simulator, p)) for p in phones) == N
    traces = mass.xmlrpc("mailing.trace", "search_read", [("mass_mailing_id", "=", mailing)],
                         fields=["trace_status"])
    assert {t["trace_status"] for t in traces} == {"pending"} and len(traces) == N
    simulator.advance()
    traces = mass.xmlrpc("mailing.trace", "search_read", [("mass_mailing_id", "=", mailing)],
                         fields=["trace_status", "failure_type", "sms_number"])
    by_status: Dict[str, int] = {}
    for trace in traces:
        by_status[trace["trace_status"]] = by_status.get(trace["trace_status"], 0) + 1
    assert by_status == {"sent": N - 5, "bounce": 5}
    failures = sorted(t["failure_type"] for t in traces if t["trace_status"] == "bounce")
    assert failures == ["sms_expired"] * 2 + ["sms_not_delivered"] * 3
    [stats] = mass.xmlrpc("mailing.mailing", "read", [mailing],
                          ["sent", "delivered", "bounced", "received_ratio"])
    assert (stats["sent"], stats["delivered"], stats["bounced"]) == (N, N - 5, 5)
    assert round(stats["received_ratio"]) == round(100 * (N - 5) / N)


def test_every_test_sms_of_a_mailing_goes_out_and_is_logged(
        mass: Server, kolmeya_for_odoo: Sim) -> None:
    # Odoo's test wizard passes the number itself as res_id (there is no sms.sms row): the
    # second test to a number was taken for the first one sent again, answered "success"
    # (logged "Test SMS successfully sent") and never reached the gateway
    simulator = kolmeya_for_odoo[0]
    phone = unique_phone()
    model = mass.xmlrpc("ir.model", "search", [("model", "=", "res.partner")])[0]
    mailing = mass.xmlrpc("mailing.mailing", "create", {
        "name": "Black Friday", "subject": "Black Friday", "mailing_type": "sms",
        "body_plaintext": "Black Friday: 10% off", "mailing_model_id": model})
    bodies = ["Black Friday: 10% off", "Black Friday: 10% off", "Black Friday: 20% off"]
    for body in bodies:  # tested, tested again, corrected and tested
        mass.xmlrpc("mailing.mailing", "write", [mailing], {"body_plaintext": body})
        wizard = mass.xmlrpc("mailing.sms.test", "create",
                             {"mailing_id": mailing, "numbers": phone})
        mass.xmlrpc("mailing.sms.test", "action_send_sms", [wizard])
    assert [m.body for m in _sim_messages(simulator, phone)] == bodies
    logged = mass.xmlrpc("mail.message", "search_read", [
        ("model", "=", "mailing.mailing"), ("res_id", "=", mailing)], fields=["body"])
    said = [m["body"] for m in logged if f"Test SMS successfully sent to {phone}" in m["body"]]
    assert len(said) == len(bodies), [m["body"] for m in logged]
