"""``odoo15_mailing``: a ``mass_mailing_sms`` mailing to 5,000 partners, sent by Odoo 15 through
smskit and through Odoo's stock path, in one real Odoo 15.

Against the Odoo 15 of the ``real_odoo`` tests (``tests/odoo15/odoo15_harness.py``): a copy of
its ``mass`` template (the users' set-up: ``sms_base_sr``, the ChatRoom stand-in,
``mass_mailing_sms`` and ``sms_smskit`` with its parts), smskit pip-installed into Odoo's
virtualenv, the Kolmeya simulator under uvicorn in its own process. One ``odoo-bin shell``
process runs both sides in turn, each on its own 5,000 partners, after a one-partner warm-up
each. Each side is what an operator's "Send" does: ``mailing.action_send_sms()`` (Odoo renders
the text per partner, creates the ``sms.sms`` rows and the traces), then Odoo's SMS queue
(``sms.sms._process_queue()``, the "SMS: SMS Queue Manager" cron) sends them in batches of
``sms.session.batch.size`` (500) through ``sms.api._send_sms_batch``:

* **smskit**: the addon's ``_send_sms_batch``: one ``send_many`` per batch (blacklist, quiet
  hours, segments, the ``sms.message`` mirror rows of ``sms_base_sr``, one Kolmeya request),
  the ``sms.sms`` rows kept, traces and rows moved to "sent, no report yet";
* **stock**: ``smskit.odoo_sms = iap``: Odoo's own ``_send_sms_batch``, its IAP JSON-RPC call
  stubbed to answer ``success`` for every message (no network), the rows unlinked, the
  traces ``sent``.

Figures: wall time of each side (committed), SQL statements (Odoo's own per-thread query
counter: every statement its cursors send to PostgreSQL; for smskit also the statements of its
own store, by default the schema ``smskit`` of Odoo's database on smskit's own connection,
counted with SQLAlchemy's ``before_cursor_execute``) and gateway calls (HTTP
requests to Kolmeya; IAP JSON-RPC calls on the stock side). Both sides make one Odoo call (the
mailing's send) and no other RPC: smskit runs inside Odoo.
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

FULL_N = 5000
QUICK_N = 200
BODY = ("Olá {{ object.name }}, sua fatura vence amanhã. Pague pelo app ou pelo código de "
        "barras. Dúvidas? Responda esta mensagem.")

#: Runs inside ``odoo-bin shell`` (Python 3.8, ``env`` bound); ``%(...)s`` filled in by run().
SHELL = r'''
import json, threading, time
import sqlalchemy
from sqlalchemy import event

ARGS = json.loads(%(args)r)
N = ARGS["n"]
icp = env["ir.config_parameter"].sudo()
for key, value in ARGS["params"].items():
    icp.set_param(key, value)
rows = ARGS["rows"]
partners = env["res.partner"].create([{"name": r["nome"], "mobile": r["e164"]} for r in rows])
env.cr.commit()
ids = partners.ids
model = env["ir.model"]._get("res.partner").id
sidecar = [0]
iap_calls = [0]


@event.listens_for(sqlalchemy.engine.Engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):
    sidecar[0] += 1


SmsApi = type(env["sms.api"])


def _iap_stub(self, local_endpoint, params):
    """Odoo's IAP JSON-RPC call, answered success for every message (no network)."""
    iap_calls[0] += 1
    return [{"res_id": m["res_id"], "state": "success", "credit": 1}
            for m in params["messages"]]


SmsApi._contact_iap = _iap_stub


def send(partner_ids, name):
    mailing = env["mailing.mailing"].create({
        "name": name, "subject": name, "mailing_type": "sms", "body_plaintext": ARGS["body"],
        "mailing_model_id": model, "mailing_domain": repr([("id", "in", partner_ids)]),
        "keep_archives": False})
    env.cr.commit()
    thread = threading.current_thread()
    thread.query_count = 0  # Odoo's cursor counts its statements here (and times them)
    thread.query_time = 0.0
    sidecar[0] = 0
    iap_calls[0] = 0
    started = time.perf_counter()
    mailing.action_send_sms()
    env.cr.commit()
    env["sms.sms"]._process_queue()  # what the SMS queue cron does (commits per batch)
    env.cr.commit()
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "odoo_sql": thread.query_count, "sidecar_sql": sidecar[0],
              "iap_calls": iap_calls[0]}
    traces = env["mailing.trace"].read_group([("mass_mailing_id", "=", mailing.id)],
                                             ["trace_status"], ["trace_status"])
    result["traces"] = {t["trace_status"]: t["trace_status_count"] for t in traces}
    mailing.invalidate_cache()
    result["mailing_sent"] = mailing.sent
    return result


def side(odoo_sms):
    icp.set_param("smskit.odoo_sms", odoo_sms)
    env.cr.commit()


warm = ids[:2]
ours, theirs = ids[2:2 + N], ids[2 + N:]
side("smskit")
send([warm[0]], "warm-up smskit")  # the kit built, the schema detected, connections opened
result = {"smskit": send(ours, "smskit")}
side("iap")
send([warm[1]], "warm-up stock")
result["stock"] = send(theirs, "stock")
result["sms_message_rows"] = env["sms.message"].search_count([]) \
    if "sms.message" in env else 0
print("BENCH-ANSWER " + json.dumps(result))
'''


def _answer(text: str) -> Dict[str, Any]:
    found = common.read_answer(text)
    if found is None:
        raise RuntimeError(f"the Odoo shell gave no answer:\n{text[-3000:]}")
    return found


def _stats(base_url: str) -> Dict[str, Any]:
    import httpx

    return dict(httpx.get(f"{base_url}/_sim/stats", timeout=10).json())


def _measure(odoo: Any, n: int, variant: str = "mass") -> Dict[str, Any]:
    db = odoo.new_database(variant)
    try:
        with common.simulator() as sim:
            args = {"n": n, "rows": common.rows_with_e164(2 * n + 2, 700_000), "body": BODY,
                    "params": {f"smskit.{k}": v
                               for k, v in common.kit_settings(sim.base_url).items()}}
            before = _stats(sim.base_url)
            shell = odoo.shell(db, SHELL % {"args": json.dumps(args)}, timeout=3600)
            after = _stats(sim.base_url)
        result = _answer(shell.stdout + shell.stderr)
    finally:
        odoo.drop_database(db)
        odoo.sidecar(db).unlink(missing_ok=True)
    result["requests"] = after["requests"] - before["requests"]
    result["kolmeya_messages"] = after["messages"] - before["messages"]
    ours, theirs = result["smskit"], result["stock"]
    if ours["traces"] != {"pending": n} or theirs["traces"] != {"sent": n}:
        raise RuntimeError(f"odoo15_mailing: the mailings did not all go out: {result}")
    if result["kolmeya_messages"] != n + 1:  # and the warm-up's
        raise RuntimeError(f"odoo15_mailing: Kolmeya got {result['kolmeya_messages']} "
                           f"messages for {n} + 1: {result}")
    return result


def run(quick: bool = False) -> List[Figure]:
    """Both sides on 5,000 partners (200 with ``quick``), in one Odoo shell process, on the
    users' set-up; and, as a supplement, the same on a database without ``sms.message`` (no
    ``sms_base_sr``), where smskit keeps no row of its own: its cost on Odoo's path alone."""
    from odoo15_harness import Odoo15, Unavailable

    odoo = Odoo15.from_environ()
    try:
        odoo.check()
        odoo.prepare()
    except Unavailable as exc:
        common.log(f"odoo15_mailing: skipped, no real Odoo 15 ({exc})")
        return []
    n = QUICK_N if quick else FULL_N
    common.log(f"odoo15_mailing: an SMS mailing to {n} partners through smskit and through "
               f"Odoo's stock path, in Odoo 15 with sms_base_sr ...")
    result = _measure(odoo, n)
    common.log("odoo15_mailing: the same without sms.message ...")
    bare = _measure(odoo, n, "mass_stock")
    ours, theirs = result["smskit"], result["stock"]
    ratio = theirs["seconds"] / ours["seconds"]
    bare_ratio = bare["stock"]["seconds"] / bare["smskit"]["seconds"]
    return [
        Figure("odoo15_mailing_smskit_s", ours["seconds"], "s",
               note=f"{n} SMS: action_send_sms + the SMS queue, through smskit and Kolmeya "
                    f"({result['sms_message_rows']} sms.message rows)"),
        Figure("odoo15_mailing_stock_s", theirs["seconds"], "s",
               note=f"the same {n} through Odoo's own _send_sms_batch, IAP stubbed"),
        Figure("odoo15_mailing_ratio_vs_stock", ratio, "x",
               note="stock time over smskit's (below 1: smskit slower)"),
        Figure("odoo15_mailing_smskit_sql", ours["odoo_sql"], "statements",
               note=f"PostgreSQL, Odoo's query counter; plus {ours['sidecar_sql']} to the "
                    f"smskit's own store (schema smskit)"),
        Figure("odoo15_mailing_stock_sql", theirs["odoo_sql"], "statements",
               note="PostgreSQL, Odoo's query counter"),
        Figure("odoo15_mailing_smskit_gateway_calls", result["requests"] - 1, "requests",
               note="HTTP requests to Kolmeya (the warm-up's left out)"),
        Figure("odoo15_mailing_stock_gateway_calls", theirs["iap_calls"], "requests",
               note="IAP JSON-RPC calls (stubbed)"),
        Figure("odoo15_mailing_no_sms_message_ratio_vs_stock", bare_ratio, "x",
               note=f"supplement, no sms_base_sr: smskit {bare['smskit']['seconds']:.1f} s "
                    f"({bare['smskit']['odoo_sql']} statements), stock "
                    f"{bare['stock']['seconds']:.1f} s ({bare['stock']['odoo_sql']})"),
    ]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(figure.result_line())
