"""``odoo15``: 1,000 SMS sent from Odoo code through the addon, in a real Odoo 15 on Python 3.8.

Against the Odoo 15 of the ``real_odoo`` tests (``tests/odoo15/odoo15_harness.py``: the same
installation, smskit pip-installed into its virtualenv with the ``odoo-addon`` extra, a copy of
the users' template database with ``sms_base_sr``, the ChatRoom stand-in and ``sms_smskit``) and
the Kolmeya simulator under uvicorn in its own process. One ``odoo-bin shell`` process runs both
sides, in turn, on 1,000 recipients each (every one an Odoo partner, so each message gets its
chatter note), after one warm-up message each:

* **smskit**: ``env["smskit.bridge"].smskit_send_many(rows, TEMPLATE)``: every message rendered,
  its ``sms.message`` row created ``outgoing`` before the gateway is called (sms_base_sr posts
  its note on the partner), sent to Kolmeya in requests of up to 1,000, and the rows moved to
  ``sent`` with the gateway's ids, all committed;
* **per recipient**, the users' modules' way today: for each recipient in turn, create its
  ``sms.message`` (the same note), one ``requests.post`` of ``sms/store`` with that one message,
  and one ``write`` of the result on the row; committed at the end.

Figures: wall time of each side (the commit included), ``odoo_send_ratio_vs_per_recipient``
(per-recipient time over smskit's; goal >= 20), and SQL statements per 1,000 messages, counted
by Odoo's own per-thread query counter (every statement Odoo's cursor sends to PostgreSQL) and,
for smskit, the statements its own store runs (by default the schema ``smskit`` of Odoo's
database, on smskit's own connection, so Odoo's counter does not see them), counted with
SQLAlchemy's ``before_cursor_execute`` event (an ``executemany`` is one).

Needs what the ``real_odoo`` tests need (``SMSKIT_ODOO15_SCRIPT``, ``SMSKIT_ODOO15_DIR``,
``ODOO15_PG_PORT``...); without them it reports nothing and says why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "odoo15"))

import common
from common import Figure

FULL_N = 1000
QUICK_N = 100
#: The supplement: the gateway answering each request after this many seconds, on fewer.
WAN_DELAY = 0.03
WAN_N = {False: 300, True: 50}

#: Runs inside ``odoo-bin shell`` (Python 3.8, ``env`` bound); ``%(...)s`` filled in by run().
SHELL = r'''
import json, threading, time
import requests
import sqlalchemy
from sqlalchemy import event

ARGS = json.loads(%(args)r)
N = ARGS["n"]
icp = env["ir.config_parameter"].sudo()
for key, value in ARGS["params"].items():
    icp.set_param(key, value)
rows = ARGS["rows"]  # 2 N + 2 recipients: smskit's, the per-recipient side's, two warm-ups
env["res.partner"].create([{"name": r["nome"], "mobile": r["e164"]} for r in rows])
env.cr.commit()
template = ARGS["template"]
Sms = env["sms.message"]
partners = {p.mobile: p.id for p in env["res.partner"].search(
    [("mobile", "in", [r["e164"] for r in rows])])}
sidecar = [0]


@event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):
    sidecar[0] += 1


def render(row):
    return (template.replace("{{ nome }}", row["nome"]).replace("{{ valor }}", row["valor"])
            .replace("{{ vencimento }}", row["vencimento"]))


def per_recipient(batch):
    """The users' modules: one row, one HTTP call and one write per recipient, in turn."""
    url = ARGS["sim"] + "/api/v1/sms/store"
    headers = {"Authorization": "Bearer " + ARGS["token"]}
    for row in batch:
        body = render(row)
        message = Sms.create({"partner_id": partners[row["e164"]], "phone": row["e164"],
                              "body": body, "direction": "outgoing", "state": "outgoing"})
        answer = requests.post(url, json={"messages": [
            {"phone": row["e164"].lstrip("+")[2:], "message": body}]},
            headers=headers, timeout=30)
        data = answer.json() if answer.status_code == 200 else {}
        if data.get("valids"):
            message.write({"state": "sent", "provider_job_id": data.get("id"),
                           "provider_message_id": data["valids"][0].get("id"),
                           "sent_date": time.strftime("%%Y-%%m-%%d %%H:%%M:%%S", time.gmtime())})
        else:
            message.write({"state": "error", "error_message": answer.text[:200]})


def smskit(batch):
    summary = env["smskit.bridge"].smskit_send_many(
        [{"phone": r["e164"], "nome": r["nome"], "valor": r["valor"],
          "vencimento": r["vencimento"]} for r in batch], template)
    assert summary["sent"] == len(batch), summary


def measure(work, batch):
    thread = threading.current_thread()
    thread.query_count = 0  # Odoo's cursor counts its statements here (and times them)
    thread.query_time = 0.0
    sidecar[0] = 0
    started = time.perf_counter()
    work(batch)
    env.cr.commit()
    return {"seconds": time.perf_counter() - started, "odoo_sql": thread.query_count,
            "sidecar_sql": sidecar[0]}


warm_smskit, warm_users = rows[0], rows[1]
smskit([warm_smskit])          # the kit is built, the schema detected, connections opened
per_recipient([warm_users])
env.cr.commit()
ours = rows[2:2 + N]
theirs = rows[2 + N:]
result = {"smskit": measure(smskit, ours), "per_recipient": measure(per_recipient, theirs)}
for side, batch in (("smskit", ours), ("per_recipient", theirs)):
    phones = [r["e164"] for r in batch]
    result[side]["sent_rows"] = Sms.search_count([("phone", "in", phones),
                                                  ("state", "=", "sent")])
    result[side]["notes"] = env["mail.message"].search_count([
        ("model", "=", "res.partner"), ("res_id", "in", [partners[p] for p in phones]),
        ("message_type", "=", "comment")])
print("BENCH-ANSWER " + json.dumps(result))
'''


def _answer(text: str) -> Dict[str, Any]:
    found = common.read_answer(text)
    if found is None:
        raise RuntimeError(f"the Odoo shell gave no answer:\n{text[-3000:]}")
    return found


def _measure(odoo: Any, n: int, **sim_config: Any) -> Dict[str, Any]:
    """Both sides on ``n`` recipients each in one Odoo shell process, on a fresh copy of the
    template, against a fresh simulator (``sim_config``: its settings)."""
    db = odoo.new_database("sr")
    try:
        with common.simulator(**sim_config) as sim:
            args = {"n": n, "rows": common.rows_with_e164(2 * n + 2, 500_000),
                    "template": common.TEMPLATE,
                    "sim": sim.base_url, "token": common.SIM_TOKEN,
                    "params": {f"smskit.{k}": v
                               for k, v in common.kit_settings(sim.base_url).items()}}
            before = _stats(sim.base_url)
            shell = odoo.shell(db, SHELL % {"args": json.dumps(args)}, timeout=1800)
            after = _stats(sim.base_url)
        result = _answer(shell.stdout + shell.stderr)
    finally:
        odoo.drop_database(db)
        odoo.sidecar(db).unlink(missing_ok=True)
    for side in ("smskit", "per_recipient"):
        if result[side]["sent_rows"] != n:
            raise RuntimeError(f"odoo15: {result[side]['sent_rows']} of {n} rows sent: "
                               f"{result}")
    result["requests"] = after["requests"] - before["requests"]
    result["ratio"] = result["per_recipient"]["seconds"] / result["smskit"]["seconds"]
    return result


def run(quick: bool = False) -> List[Figure]:
    """Both sides on 1,000 recipients (100 with ``quick``), in one Odoo shell process; and,
    as a supplement, on 300 (50) with the gateway answering each request after 30 ms, as
    one across a network does (loopback favours the path making a request per message)."""
    from odoo15_harness import Odoo15, Unavailable

    odoo = Odoo15.from_environ()
    try:
        odoo.check()
        odoo.prepare()
    except Unavailable as exc:
        common.log(f"odoo15: skipped, no real Odoo 15 ({exc})")
        return []
    n = QUICK_N if quick else FULL_N
    common.log(f"odoo15: {n} SMS through the addon and {n} per recipient, in Odoo 15 ...")
    result = _measure(odoo, n)
    wan_n = WAN_N[quick]
    common.log(f"odoo15: the same on {wan_n}, the gateway answering after "
               f"{WAN_DELAY * 1000:.0f} ms ...")
    wan = _measure(odoo, wan_n, slow_seconds=WAN_DELAY)
    ours, theirs = result["smskit"], result["per_recipient"]
    ratio = float(result["ratio"])
    per = 1000 / n
    note = (f"{n} messages each; gateway requests: {result['requests']} in all; notes on "
            f"the partners: {ours['notes']} / {theirs['notes']}")
    return [
        Figure("odoo15_send_s", ours["seconds"], "s", note=f"smskit_send_many, {n} messages"),
        Figure("odoo15_per_recipient_send_s", theirs["seconds"], "s",
               note="create + requests.post + write per recipient"),
        Figure("odoo_send_ratio_vs_per_recipient", ratio, "x", goal=">= 20", met=ratio >= 20,
               note=note),
        Figure("odoo15_sql_per_1000", ours["odoo_sql"] * per, "statements",
               note="PostgreSQL, Odoo's query counter"),
        Figure("odoo15_sidecar_sql_per_1000", ours["sidecar_sql"] * per, "statements",
               note="smskit's own store (schema smskit)"),
        Figure("odoo15_per_recipient_sql_per_1000", theirs["odoo_sql"] * per, "statements",
               note="PostgreSQL, Odoo's query counter"),
        Figure(f"odoo_send_ratio_vs_per_recipient_rtt{WAN_DELAY * 1000:.0f}ms",
               float(wan["ratio"]), "x",
               note=f"supplement, {wan_n} messages each: smskit "
                    f"{wan['smskit']['seconds']:.1f} s, per recipient "
                    f"{wan['per_recipient']['seconds']:.1f} s"),
    ]


def _stats(base_url: str) -> Dict[str, Any]:
    import httpx

    return dict(httpx.get(f"{base_url}/_sim/stats", timeout=10).json())


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure.result_line())
