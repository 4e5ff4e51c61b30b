"""``scaleout``: one queue of messages on one PostgreSQL, sent by 1, 2 and 4 ``smskit worker``
processes into the Kolmeya simulator.

For each worker count, in turn: the store's tables are emptied; a child queues ``n`` templated
pt-BR messages (``send_many`` with ``dispatch=False``: validated, rendered and stored
``outgoing``, nothing sent); a fresh simulator starts (its own process); then ``k`` processes of
``python -m smskit worker --interval 0.2`` start on the same database (polling of statuses and
replies off) and the clock runs from their start until the simulator has accepted ``n``
messages. The workers are stopped with SIGTERM. Throughput (``scaleout_<k>``) is counted from
the first message the simulator accepted (the workers' start-up, a second or more when four
Python processes import at once on two cores, is left out; the note gives the time from their
start too). ``scaleout_sent_twice`` is the simulator's count of
message references it accepted more than once, summed over the three runs (it must be 0: the
workers claim batches with ``FOR UPDATE SKIP LOCKED``); every message must also end ``sent``
in the store. After the last run, one process applies a ``delivered`` report to every message,
256 to a transaction (``scaleout_reports_per_s``), and then the sizes of the tables and their
indexes (``pg_relation_size``, ``pg_indexes_size``) per message give the figures
``docs/stores.md`` estimates from, with the CPU the PostgreSQL backends serving the workers
(and the reports) used per message (``/proc`` of the server's processes: PostgreSQL on this
machine).

Needs PostgreSQL: ``SMSKIT_BENCH_POSTGRES_URL`` (or ``SMSKIT_TEST_POSTGRES_URL``), a database
the benchmark may empty. Without one it is skipped, saying so. ``n`` is 200,000
(``--scaleout-n`` of ``run.py``, or ``BENCH_SCALEOUT_N``; 5,000 with ``--quick``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import httpx
from common import Figure

FULL_N, QUICK_N = 200_000, 5_000
WORKER_COUNTS = (1, 2, 4)
#: Tables whose sizes are reported (the rest stay near empty in this run).
TABLES = ("messages", "events", "batches")


def database_url() -> Optional[str]:
    """The PostgreSQL the benchmark may empty, or ``None``."""
    return os.environ.get("SMSKIT_BENCH_POSTGRES_URL") or os.environ.get(
        "SMSKIT_TEST_POSTGRES_URL")


def empty(url: str) -> None:
    """Empty every table of the store at ``url`` (its schema brought up to date first)."""
    from smskit.store.sql import SqlStore
    from smskit.store.sql.tables import VERSION_TABLE

    store = SqlStore(url)
    try:
        with store._engine.begin() as conn:
            tables = set(store._engine.dialect.get_table_names(conn)) - {VERSION_TABLE}
            conn.exec_driver_sql(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY CASCADE")
    finally:
        store.close()


def backend_cpu(url: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to this database (but the
    one asking), read from ``/proc`` (PostgreSQL on this machine); 0 where it cannot be read."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        pids = [int(row[0]) for row in conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"))]
    engine.dispose()
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone, or another machine's server
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def queue_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Store ``n`` messages ``outgoing`` (nothing sent); the time it took."""
    from smskit.config import Settings
    from smskit.kit import SmsKit

    settings = Settings.load(environ={}, database_url=args["db"],
                             **common.kit_settings(args["sim"]))
    kit = SmsKit(settings)
    started = time.perf_counter()
    summary = kit.send_many(common.rows(int(args["n"])), common.TEMPLATE,
                            idempotency_prefix="scaleout", campaign_id="scaleout",
                            dispatch=False)
    elapsed = time.perf_counter() - started
    cpu = backend_cpu(args["db"])  # the kit's connection is still open: its backend's CPU
    kit.close()
    return {"seconds": elapsed, "queued": summary.queued, "rejected": summary.rejected,
            "pg_cpu_seconds": cpu}


def deliver_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Apply a ``delivered`` report to every message, 256 to a transaction (what the webhook
    server's group commit does under load); the time it took."""
    import sqlalchemy as sa

    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.models import State, StatusEvent

    settings = Settings.load(environ={}, database_url=args["db"],
                             **common.kit_settings("http://127.0.0.1:9"))
    kit = SmsKit(settings)
    engine = sa.create_engine(args["db"].replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        ids = [str(row[0]) for row in conn.execute(sa.text("SELECT id FROM messages"))]
    engine.dispose()
    started = time.perf_counter()
    applied = 0
    for start in range(0, len(ids), 256):
        outcomes = kit.apply_statuses([StatusEvent(provider="kolmeya", state=State.DELIVERED,
                                                   message_id=i) for i in ids[start:start + 256]])
        applied += sum(1 for o in outcomes if o.applied)
    elapsed = time.perf_counter() - started
    cpu = backend_cpu(args["db"])  # the kit's connection is still open: its backend's CPU
    kit.close()
    return {"seconds": elapsed, "applied": applied, "pg_cpu_seconds": cpu}


def sizes_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Rows, table bytes and index bytes of the store's tables; messages by state."""
    import sqlalchemy as sa

    engine = sa.create_engine(args["db"].replace("postgresql://", "postgresql+psycopg://", 1))
    out: Dict[str, Any] = {"tables": {}}
    with engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            table_bytes, index_bytes = conn.execute(sa.text(
                "SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
                "WHERE c.relname = :name AND c.relkind = 'r'"), {"name": table}).one()
            out["tables"][table] = {"rows": int(rows or 0), "table_bytes": int(table_bytes),
                                    "index_bytes": int(index_bytes)}
        out["states"] = {str(state): int(count) for state, count in conn.execute(sa.text(
            "SELECT state, count(*) FROM messages GROUP BY state"))}
    engine.dispose()
    return out


def _worker_env(url: str, sim: str) -> Dict[str, str]:
    return {"SMSKIT_DATABASE_URL": url, "SMSKIT_PROVIDER": "kolmeya",
            "SMSKIT_KOLMEYA_TOKEN": common.SIM_TOKEN, "SMSKIT_KOLMEYA_BASE_URL": f"{sim}/api/v1",
            "SMSKIT_STATUS_POLL_EVERY": "0", "SMSKIT_REPLY_POLL_EVERY": "0"}


def _stats(sim: str) -> Dict[str, Any]:
    stats: Dict[str, Any] = httpx.get(f"{sim}/_sim/stats", timeout=30).json()
    return stats


def one(url: str, n: int, workers: int, *, deliver: bool = False) -> Dict[str, Any]:
    """Queue ``n`` messages, send them with ``workers`` processes (then, with ``deliver``,
    apply a delivery report to each); the timings and counts."""
    empty(url)
    with common.simulator() as sim:
        common.log(f"scaleout: queueing {n:,} messages on PostgreSQL ...")
        queued = common.run_child("bench_scaleout.py", "queue",
                                  {"db": url, "sim": sim.base_url, "n": n}, timeout=3600)
        if queued["queued"] != n:
            raise RuntimeError(f"scaleout: {queued} queued, not {n}")
        common.log(f"scaleout: {workers} worker(s) sending {n:,} messages ...")
        env = common.child_env(_worker_env(url, sim.base_url))
        started = time.monotonic()
        procs = [subprocess.Popen([common.PYTHON, "-m", "smskit", "worker", "--interval", "0.2"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
        first_at, first_count = 0.0, 0
        try:
            while True:
                accepted = int(_stats(sim.base_url)["messages"])
                if accepted and not first_at:  # the workers are up: steady state from here
                    first_at, first_count = time.monotonic(), accepted
                if accepted >= n:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("scaleout: a worker exited before the send was done")
                if time.monotonic() - started > 3600:
                    raise RuntimeError("scaleout: not done within an hour")
                time.sleep(0.1)
            done_at = time.monotonic()
            seconds = done_at - started
            pg_cpu = backend_cpu(url)  # the workers' backends, still connected
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        stats = _stats(sim.base_url)
    if stats["messages"] != n:
        raise RuntimeError(f"scaleout: the simulator accepted {stats['messages']} of {n}")
    delivered: Dict[str, Any] = {}
    if deliver:
        common.log(f"scaleout: a delivery report for each of the {n:,} messages ...")
        delivered = common.run_child("bench_scaleout.py", "deliver", {"db": url}, timeout=3600)
    sizes = common.run_child("bench_scaleout.py", "sizes", {"db": url})
    if sizes["states"].get("delivered" if deliver else "sent") != n:
        raise RuntimeError(f"scaleout: {workers} workers: store {sizes['states']}, simulator "
                           f"accepted {stats['messages']} of {n}")
    steady = ((n - first_count) / (done_at - first_at) if n > first_count and done_at > first_at
              else n / seconds)  # all in one poll: no steady state to see
    return {"workers": workers, "seconds": seconds, "rate": steady, "start_up": first_at - started,
            "queue_seconds": float(queued["seconds"]), "twice": int(stats["accepted_twice"]),
            "requests": int(stats["requests"]), "sizes": sizes, "load": common.load_text(),
            "delivered": delivered, "pg_cpu_seconds": pg_cpu,
            "queue_pg_cpu_seconds": float(queued["pg_cpu_seconds"])}


def run(quick: bool = False) -> List[Figure]:
    """1, 2 and 4 workers on one PostgreSQL; the throughput of each, sent twice, sizes."""
    url = database_url()
    if url is None:
        common.log("scaleout: skipped, no PostgreSQL (set SMSKIT_BENCH_POSTGRES_URL to a "
                   "database it may empty)")
        return []
    n = QUICK_N if quick else int(os.environ.get("BENCH_SCALEOUT_N") or FULL_N)
    results = [one(url, n, workers, deliver=workers == WORKER_COUNTS[-1])
               for workers in WORKER_COUNTS]
    figures = [
        Figure(f"scaleout_{r['workers']}", r["rate"], "msg/s",
               note=f"{n:,} messages by {r['workers']} worker process(es) in "
                    f"{r['seconds']:.1f} s from their start ({n / r['seconds']:.0f} msg/s; "
                    f"first message accepted after {r['start_up']:.1f} s), {r['requests']:,} "
                    f"requests (queued in {r['queue_seconds']:.0f} s beforehand); {r['load']}")
        for r in results]
    twice = sum(r["twice"] for r in results)
    figures.append(Figure("scaleout_sent_twice", twice, "messages", goal="0", met=twice == 0,
                          note=f"references the simulator accepted more than once, over the "
                               f"{len(results)} runs"))
    for r in results:
        figures.append(Figure(
            f"scaleout_pg_cpu_us_per_msg_{r['workers']}", r["pg_cpu_seconds"] / n * 1e6, "us",
            note=f"CPU of the PostgreSQL backends serving the {r['workers']} worker(s), per "
                 f"message sent ({r['pg_cpu_seconds']:.1f} s in all); queueing them used "
                 f"{r['queue_pg_cpu_seconds'] / n * 1e6:.0f} us per message more"))
    last = results[-1]
    figures.append(Figure(
        "scaleout_reports_per_s", n / float(last["delivered"]["seconds"]), "reports/s",
        note=f"{last['delivered']['applied']:,} delivery reports applied by one process, 256 "
             f"to a transaction, after the last run; its PostgreSQL backend used "
             f"{last['delivered']['pg_cpu_seconds'] / n * 1e6:.0f} us of CPU per report"))
    tables = last["sizes"]["tables"]
    for table in ("messages", "events"):
        got = tables[table]
        figures.append(Figure(
            f"scaleout_pg_{table}_bytes_per_msg",
            (got["table_bytes"] + got["index_bytes"]) / n, "B",
            note=f"{got['rows']:,} rows: table {got['table_bytes'] / 2**20:.1f} MiB + "
                 f"indexes {got['index_bytes'] / 2**20:.1f} MiB after {n:,} messages sent "
                 "and delivered"))
    return figures


if __name__ == "__main__":
    common.child_main({"queue": queue_child, "deliver": deliver_child, "sizes": sizes_child})
