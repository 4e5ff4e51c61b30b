"""``dispatch``: a bulk send through the whole pipeline, against the naive path.

smskit: ``SmsKit.send_many`` over a generator of templated pt-BR rows (phones as people type
them), idempotency prefix on, :class:`SqlStore` on a SQLite file, :class:`KolmeyaProvider` over
httpx to the simulator (its own process, uvicorn on loopback). Everything is persisted as
``outgoing`` before it is sent, and every result is recorded.

Naive: what the users' Odoo modules do for a campaign: for each recipient, in turn, render the
body, POST ``sms/store`` with that one message (``requests.post``, a new connection each time, as
in the modules) and write the result to SQLite in its own transaction (same WAL settings as
smskit's store). It runs on a smaller sample; rates are per message.

Floor: the least work that sends the same messages: the same rows rendered with
``str.replace`` and their phones cut to digits (no validation), written to the same kind of
SQLite file (WAL, ``synchronous=FULL`` as smskit's store) with ONE ``executemany`` in one
transaction, then posted to the simulator in 1,000-message ``sms/store`` requests over one
keep-alive httpx client, nothing else done (no state written back). ``dispatch_ratio_vs_floor``
is smskit's rate over the floor's: how close the whole pipeline is to the minimum work.

Durable floor: the least work that keeps the guarantees smskit keeps (each message durable
before its request, each result durable after it): per 1,000 messages, rendered and cut as
in the floor, ONE transaction inserting the batch row and the messages already claimed into
smskit's own schema (every column, every index, ``synchronous=FULL``), the request, and ONE
transaction writing each message's result and the batch's; no validation, no look-ups, no
objects. ``dispatch_ratio_vs_durable_floor`` is smskit's rate over it.

Pipelined floor: the durable floor with each request sent from a second thread while the next
chunk is rendered and inserted (its results written after that insert), which is how smskit's
pipeline overlaps them: the fastest sender here that keeps the guarantees.
``dispatch_ratio_vs_pipelined_floor`` is smskit's rate over it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

FULL_N = 100_000
QUICK_N = 5_000
NAIVE_FULL_N = 2_000
NAIVE_QUICK_N = 300
PROFILE_N = 20_000
#: The supplementary comparison: the gateway answers each request after this many seconds.
WAN_DELAY = 0.03
WAN_N = {False: 20_000, True: 2_000}
WAN_NAIVE_N = {False: 150, True: 40}


def smskit_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Send ``n`` rows with smskit; the time, the counts and this process's peak RSS."""
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.models import State
    from smskit.store.sql import SqlStore
    from smskit_kolmeya.provider import KolmeyaProvider

    n = int(args["n"])
    settings = Settings.load(environ={}, **common.kit_settings(args["sim"]))
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{Path(tmp) / 'smskit.db'}")
        kit = SmsKit(settings, store=store, provider=KolmeyaProvider.from_settings(settings))
        kit.send("(11) 98765-4321", "aquecimento")  # connections and caches warm, like a server
        rss_ready = common.peak_rss_mb()
        profiler = cProfile.Profile() if args.get("profile") else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        summary = kit.send_many(common.rows(n), common.TEMPLATE, idempotency_prefix="bench-1",
                                campaign_id="bench")
        if profiler is not None:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        counts = store.count_by_state("kolmeya")
        kit.close()
    out: Dict[str, Any] = {
        "n": n, "seconds": elapsed, "cpu_seconds": cpu, "sent": summary.sent,
        "queued": summary.queued, "rejected": summary.rejected,
        "stored_sent": counts.get(("kolmeya", State.SENT), 0),
        "rss_ready_mb": rss_ready, "peak_rss_mb": common.peak_rss_mb(),
    }
    if profiler is not None:
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)
        out["profile"] = text.getvalue()
    return out


def naive_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """One request and one committed write per recipient, in turn (the Odoo modules' way)."""
    import requests

    n = int(args["n"])
    url = f"{args['sim']}/api/v1/sms/store"
    headers = {"Authorization": f"Bearer {common.SIM_TOKEN}", "Content-Type": "application/json"}
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(str(Path(tmp) / "naive.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE sms (id INTEGER PRIMARY KEY, phone TEXT, body TEXT, state TEXT,"
                   " external_id TEXT, error TEXT)")
        sent = failed = 0
        started = time.perf_counter()
        for row in common.rows(n):
            digits = "".join(ch for ch in row["phone"] if ch.isdigit())
            body = (common.TEMPLATE.replace("{{ nome }}", row["nome"])
                    .replace("{{ valor }}", row["valor"])
                    .replace("{{ vencimento }}", row["vencimento"]))
            payload = {"messages": [{"phone": digits, "message": body}]}
            response = requests.post(url, json=payload, headers=headers, timeout=30)
            if response.status_code == 200 and response.json().get("valids"):
                state, external, error = "sent", response.json()["id"], None
                sent += 1
            else:
                state, external, error = "error", None, response.text[:200]
                failed += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO sms (phone, body, state, external_id, error) "
                       "VALUES (?, ?, ?, ?, ?)", (digits, body, state, external, error))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
    return {"n": n, "seconds": elapsed, "sent": sent, "failed": failed,
            "peak_rss_mb": common.peak_rss_mb()}


def floor_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """The minimum: render, one ``executemany``, then 1,000-message requests (see module)."""
    import httpx

    n = int(args["n"])
    url = f"{args['sim']}/api/v1/sms/store"
    headers = {"Authorization": f"Bearer {common.SIM_TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=60) as client:
        db = sqlite3.connect(str(Path(tmp) / "floor.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE sms (id TEXT PRIMARY KEY, phone TEXT, body TEXT)")
        started = time.perf_counter()
        messages = [
            (f"floor-{i:09d}", "".join(ch for ch in row["phone"] if ch.isdigit()),
             common.TEMPLATE.replace("{{ nome }}", row["nome"])
             .replace("{{ valor }}", row["valor"])
             .replace("{{ vencimento }}", row["vencimento"]))
            for i, row in enumerate(common.rows(n))]
        db.execute("BEGIN")
        db.executemany("INSERT INTO sms (id, phone, body) VALUES (?, ?, ?)", messages)
        db.execute("COMMIT")
        written = time.perf_counter() - started
        sent = 0
        for start in range(0, n, 1000):
            payload = {"messages": [{"phone": phone, "message": body, "reference": key}
                                    for key, phone, body in messages[start:start + 1000]]}
            response = client.post(url, json=payload, headers=headers)
            response.raise_for_status()
            sent += len(response.json().get("valids") or [])
        elapsed = time.perf_counter() - started
        db.close()
    return {"n": n, "seconds": elapsed, "write_seconds": written, "sent": sent,
            "peak_rss_mb": common.peak_rss_mb()}


def durable_floor_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """The least work that keeps smskit's guarantees (see module): per 1,000 messages, one
    transaction inserting the batch and its messages, claimed, into smskit's own schema (every
    column and index), the request, one transaction writing each result and the batch's.

    ``pipelined``: each request runs in a second thread while the next chunk is rendered and
    inserted, as smskit's pipeline overlaps them; its results are written after that insert."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import httpx

    from smskit.ids import new_id
    from smskit.store.sql import SqlStore

    n = int(args["n"])
    pipelined = bool(args.get("pipelined"))
    url = f"{args['sim']}/api/v1/sms/store"
    headers = {"Authorization": f"Bearer {common.SIM_TOKEN}"}
    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=60) as client, \
            ThreadPoolExecutor(max_workers=1) as pool:
        path = Path(tmp) / "floor.db"
        SqlStore(f"sqlite:///{path}").close()  # smskit's schema, migrations and indexes
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        columns = [row[1] for row in db.execute("PRAGMA table_info(messages)")]
        by_column = dict(zip(columns, range(len(columns))))
        insert = (f"INSERT INTO messages ({', '.join(columns)}) "
                  f"VALUES ({', '.join('?' * len(columns))})")
        settle = ("UPDATE messages SET state = 'sent', provider_message_id = ?, "
                  "provider_request_id = ?, sent_at = ?, updated_at = ? WHERE id = ?")
        rows = common.rows(n)
        sent = 0

        def store(size: int) -> Tuple[str, str, List[Tuple[Any, ...]]]:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime())
            batch = new_id()
            chunk = []
            for _, row in zip(range(size), rows):
                digits = "".join(ch for ch in row["phone"] if ch.isdigit())[-11:]
                body = (common.TEMPLATE.replace("{{ nome }}", row["nome"])
                        .replace("{{ valor }}", row["valor"])
                        .replace("{{ vencimento }}", row["vencimento"]))
                values = dict(
                    id=new_id(), phone="+55" + digits, body=body, direction="outbound",
                    state="outgoing", provider="kolmeya", batch_id=batch, encoding="gsm7",
                    segments=1, created_at=stamp, updated_at=stamp, campaign_id="bench",
                    tags="[]", idempotency_key=f"bench-1:+55{digits}", attempts=0)
                chunk.append(tuple(values.get(name) for name in columns))
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO batches (id, provider, status, created_at, updated_at) "
                       "VALUES (?, 'kolmeya', 'claimed', ?, ?)", (batch, stamp, stamp))
            db.executemany(insert, chunk)
            db.execute("COMMIT")
            return batch, stamp, chunk

        def post(batch: str, chunk: List[Tuple[Any, ...]]) -> Dict[str, Any]:
            payload = {"reference": batch, "messages": [
                {"phone": v[by_column["phone"]][3:], "message": v[by_column["body"]],
                 "reference": v[by_column["id"]]} for v in chunk]}
            response = client.post(url, json=payload, headers=headers)
            response.raise_for_status()
            return dict(response.json())

        def settled(batch: str, stamp: str, answer: Dict[str, Any]) -> int:
            valids = answer.get("valids") or []
            db.execute("BEGIN IMMEDIATE")
            db.executemany(settle, [(v["id"], answer.get("id"), stamp, stamp, v["reference"])
                                    for v in valids])
            db.execute("UPDATE batches SET status = 'done', updated_at = ? WHERE id = ?",
                       (stamp, batch))
            db.execute("COMMIT")
            return len(valids)

        started = time.perf_counter()
        out: Optional[Tuple[str, str, Future[Dict[str, Any]]]] = None
        for start in range(0, n, 1000):
            batch, stamp, chunk = store(min(1000, n - start))
            if not pipelined:
                sent += settled(batch, stamp, post(batch, chunk))
                continue
            if out is not None:  # the previous request was out while this chunk was stored
                sent += settled(out[0], out[1], out[2].result())
            out = (batch, stamp, pool.submit(post, batch, chunk))
        if out is not None:
            sent += settled(out[0], out[1], out[2].result())
        elapsed = time.perf_counter() - started
        db.close()
    return {"n": n, "seconds": elapsed, "sent": sent, "peak_rss_mb": common.peak_rss_mb()}


def profile(quick: bool = False) -> str:
    """A cProfile of a smaller smskit send (the text of the top entries)."""
    with common.simulator() as sim:
        result = common.run_child("bench_dispatch.py", "smskit",
                                  {"n": QUICK_N if quick else PROFILE_N, "sim": sim.base_url,
                                   "profile": True})
    return str(result["profile"])


def _both(n: int, naive_n: int, **sim_config: Any) -> Dict[str, Any]:
    """smskit over ``n`` messages and the naive path over ``naive_n``, each against its own
    fresh simulator process (``sim_config``: simulator settings)."""
    with common.simulator(**sim_config) as sim:
        common.log(f"dispatch: smskit, {n:,} messages {_where(sim_config)}...")
        ours = common.run_child("bench_dispatch.py", "smskit", {"n": n, "sim": sim.base_url})
    with common.simulator(**sim_config) as sim:
        common.log(f"dispatch: naive path, {naive_n:,} messages {_where(sim_config)}...")
        naive = common.run_child("bench_dispatch.py", "naive", {"n": naive_n, "sim": sim.base_url})
    if ours["sent"] != n or naive["sent"] != naive_n:
        raise RuntimeError(f"dispatch: not everything was sent: smskit {ours}, naive {naive}")
    rate, naive_rate = n / ours["seconds"], naive_n / naive["seconds"]
    return {"ours": ours, "rate": rate, "naive_rate": naive_rate, "ratio": rate / naive_rate,
            "load": common.load_text()}


def _floor(n: int, kind: str = "floor", pipelined: bool = False) -> Dict[str, Any]:
    """The floor (``kind``: ``floor`` or ``durable_floor``, ``pipelined`` or not) over ``n``
    messages, against its own fresh simulator process."""
    with common.simulator() as sim:
        common.log(f"dispatch: {'pipelined ' if pipelined else ''}"
                   f"{kind.replace('_', ' ')}, {n:,} messages ...")
        floor = common.run_child("bench_dispatch.py", kind,
                                 {"n": n, "sim": sim.base_url, "pipelined": pipelined})
    if floor["sent"] != n:
        raise RuntimeError(f"dispatch: the {kind} sent {floor['sent']} of {n}")
    return {**floor, "rate": n / float(floor["seconds"]), "load": common.load_text()}


def _where(sim_config: Mapping[str, Any]) -> str:
    delay = sim_config.get("slow_seconds")
    return f"(gateway answering after {delay * 1000:.0f} ms) " if delay else ""


def run(quick: bool = False) -> List[Figure]:
    """Both sides in this run, on this machine; the dispatch figures.

    Also, as a supplement, the same comparison with the simulator answering each request after
    :data:`WAN_DELAY` seconds, as a gateway across a network does (the loopback figure has no
    network at all, which favours the path that makes one request per message).
    """
    n = QUICK_N if quick else FULL_N
    naive_n = NAIVE_QUICK_N if quick else NAIVE_FULL_N
    loopback = _both(n, naive_n)
    floor = _floor(n)
    durable = _floor(n, "durable_floor")
    pipelined = _floor(n, "durable_floor", pipelined=True)
    wan = _both(WAN_N[quick], WAN_NAIVE_N[quick], slow_seconds=WAN_DELAY)
    ours = loopback["ours"]
    ratio = float(loopback["ratio"])
    rss = float(ours["peak_rss_mb"])
    floor_ratio = float(loopback["rate"]) / float(floor["rate"])
    return [
        Figure("dispatch_msgs_per_s", loopback["rate"], "msg/s",
               note=f"{n:,} messages in {ours['seconds']:.1f} s; {loopback['load']}"),
        Figure("dispatch_floor_msgs_per_s", floor["rate"], "msg/s",
               note=f"one executemany ({floor['write_seconds']:.2f} s) and "
                    f"{n // 1000:,} requests of 1,000: {floor['seconds']:.1f} s; "
                    f"{floor['load']}"),
        Figure("dispatch_ratio_vs_floor", floor_ratio, "x",
               note="smskit's whole pipeline over the minimum work of the same send"),
        Figure("dispatch_durable_floor_msgs_per_s", durable["rate"], "msg/s",
               note=f"smskit's schema, one insert (claimed) and one result write per 1,000, "
                    f"the requests, nothing else: {durable['seconds']:.1f} s; "
                    f"{durable['load']}"),
        Figure("dispatch_ratio_vs_durable_floor", float(loopback["rate"]) / durable["rate"],
               "x", note="smskit's whole pipeline over the least work its guarantees need"),
        Figure("dispatch_pipelined_floor_msgs_per_s", pipelined["rate"], "msg/s",
               note=f"the durable floor with each request out while the next chunk is "
                    f"stored, as smskit does: {pipelined['seconds']:.1f} s; "
                    f"{pipelined['load']}"),
        Figure("dispatch_ratio_vs_pipelined_floor",
               float(loopback["rate"]) / pipelined["rate"], "x",
               note="smskit's whole pipeline over the fastest sender that keeps its "
                    "guarantees"),
        Figure("dispatch_ratio_vs_naive", ratio, "x", goal=">= 30", met=ratio >= 30,
               note=f"naive: {loopback['naive_rate']:.0f} msg/s over {naive_n:,} messages; "
                    f"30 x naive = {30 * loopback['naive_rate']:,.0f} msg/s, "
                    f"{30 * loopback['naive_rate'] / durable['rate']:.2f} x the durable "
                    f"floor, {30 * loopback['naive_rate'] / pipelined['rate']:.2f} x the "
                    f"pipelined one"),
        Figure("dispatch_peak_rss_mb", rss, "MiB", goal="< 250", met=rss < 250,
               note=f"{ours['rss_ready_mb']:.0f} MiB before the send"),
        Figure(f"dispatch_ratio_vs_naive_rtt{WAN_DELAY * 1000:.0f}ms", wan["ratio"], "x",
               note=f"supplement: gateway answers after {WAN_DELAY * 1000:.0f} ms; smskit "
                    f"{wan['rate']:.0f} msg/s, naive {wan['naive_rate']:.1f} msg/s"),
    ]


if __name__ == "__main__":
    common.child_main({"smskit": smskit_child, "naive": naive_child, "floor": floor_child,
                       "durable_floor": durable_floor_child})
