"""``dashboard``: the dashboard's figures over 100k messages in SQLite.

The work: ``SqlStore.dashboard_stats`` for the last 30 days (in America/Sao_Paulo days) of a
store seeded with 100,000 outbound messages over those 30 days (two providers, 20 campaigns,
every state), 5,000 replies, 1,000 opt-outs, 20,000 short links and 30,000 clicks; then the
same through ``GET /api/stats`` under uvicorn. The store is seeded in bulk (the links' clicks
straight into the table), then each figure is the median of 7 runs after a warm-up.

``dashboard_stats_statements`` counts the SQL statements of one call: it depends on the date
range, never on the number of messages (no query per message or per campaign).
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

FULL_N = 100_000
QUICK_N = 20_000
ROUNDS = 7
DAYS = 30
TZ = "America/Sao_Paulo"
PROVIDERS = ("kolmeya", "kolmeya", "kolmeya", "loopback")
STATES = ("delivered",) * 14 + ("sent", "sent", "error", "expired", "rejected", "canceled")


def seed(store: Any, n: int, now: dt.datetime) -> None:
    """``n`` messages over the last :data:`DAYS` days, with replies, opt-outs, links, clicks."""
    import sqlalchemy as sa

    from smskit.models import Direction, Message, State
    from smskit.store.analytics import Link, local_bounds, local_day
    from smskit.store.sql.tables import link_clicks, messages

    rnd = random.Random(7)
    end = local_day(now, TZ)
    lo, _hi = local_bounds(end - dt.timedelta(days=DAYS - 1), end, TZ)
    span = max(1, int((now - lo).total_seconds()) - 1) if lo is not None else 86_400
    chunk: List[Message] = []
    ids: List[str] = []
    links: List[Link] = []
    for i in range(n):
        created = now - dt.timedelta(seconds=rnd.randrange(span))
        campaign = f"campanha-{i % 20:02d}" if i % 5 else None
        message = Message.new(
            common.e164_for(i), "Olá, sua fatura vence amanhã: https://sms.exemplo.com/l/x",
            state=State(STATES[i % len(STATES)]), provider=PROVIDERS[i % len(PROVIDERS)],
            segments=1, cost=Decimal("0.08"), created_at=created, campaign_id=campaign)
        chunk.append(message)
        ids.append(message.id)
        if i % 5 == 0:
            links.append(Link(code=f"b{i:09d}", url=f"https://exemplo.com/p/{i % 97}",
                              message_id=message.id, campaign_id=campaign, created_at=created))
        if len(chunk) == 5_000:
            store.add_messages(chunk)
            chunk = []
    if chunk:
        store.add_messages(chunk)
    for start in range(0, len(links), 5_000):
        store.add_links(links[start:start + 5_000])
    replies = []
    for j in range(n // 20):
        origin = ids[(j * 7) % len(ids)]
        replies.append({
            "id": f"in{j:09d}", "phone": common.e164_for(j), "body": "ok",
            "direction": Direction.INBOUND.value, "state": State.DELIVERED.value,
            "provider": "kolmeya", "provider_reply_id": f"r{j}", "segments": 1,
            "created_at": now - dt.timedelta(seconds=rnd.randrange(span)), "tags": [],
            "in_reply_to": origin, "attempts": 0})
    clicks = []
    for k in range(int(n * 0.3)):
        link = links[(k * 13) % len(links)]
        clicks.append({"code": link.code, "message_id": link.message_id,
                       "campaign_id": link.campaign_id, "user_agent": "bench",
                       "clicked_at": now - dt.timedelta(seconds=rnd.randrange(span))})
    with store._engine.begin() as conn:  # bulk seeding only: the store's own API is measured
        conn.execute(sa.insert(messages), replies)
        conn.execute(sa.insert(link_clicks), clicks)
    for k in range(n // 100):
        store.blacklist_add(common.e164_for(k), "opt-out keyword SAIR", "inbound:kolmeya")


def measure(args: Dict[str, Any]) -> Dict[str, Any]:
    """Seed a SQLite store, then time ``dashboard_stats`` and ``/api/stats``."""
    import httpx
    import sqlalchemy as sa

    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.server import create_app
    from smskit.store.analytics import local_day
    from smskit.store.sql import SqlStore
    from smskit.testing.servers import serve_in_thread

    n = int(args["n"])
    with tempfile.TemporaryDirectory() as folder:
        store = SqlStore(f"sqlite:///{Path(folder) / 'bench.db'}")
        now = dt.datetime.now(dt.timezone.utc)
        started = time.perf_counter()
        seed(store, n, now)
        seeded = time.perf_counter() - started
        end = local_day(now, TZ)
        start = end - dt.timedelta(days=DAYS - 1)
        statements: List[str] = []

        def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement)

        sa.event.listen(store._engine, "before_cursor_execute", count)
        report = store.dashboard_stats(start, end, TZ)
        sa.event.remove(store._engine, "before_cursor_execute", count)
        counted = len([s for s in statements if not s.lstrip().upper().startswith(
            ("BEGIN", "COMMIT", "ROLLBACK"))])
        totals = report.totals
        if totals.sent + totals.rejected + totals.canceled != n:
            raise RuntimeError(f"dashboard counted {totals.sent} + {totals.rejected} + "
                               f"{totals.canceled} messages, seeded {n}")
        times = []
        for _ in range(ROUNDS + 1):
            t0 = time.perf_counter()
            store.dashboard_stats(start, end, TZ)
            times.append(time.perf_counter() - t0)
        settings = Settings.load(environ={}, dashboard_token="bench-token")
        kit = SmsKit(settings, store=store)
        api_times = []
        with serve_in_thread(create_app(kit)) as base, httpx.Client() as client:
            for _ in range(ROUNDS + 1):
                t0 = time.perf_counter()
                response = client.get(f"{base}/api/stats",
                                      headers={"Authorization": "Bearer bench-token"})
                api_times.append(time.perf_counter() - t0)
                response.raise_for_status()
        store.close()
    return {"n": n, "seed_s": seeded, "stats_ms": statistics.median(times[1:]) * 1000,
            "api_ms": statistics.median(api_times[1:]) * 1000, "statements": counted,
            "campaigns": len(report.campaigns), "clicks": totals.clicks}


def run(quick: bool = False) -> List[Figure]:
    """The dashboard's figures over :data:`FULL_N` messages (``quick``: :data:`QUICK_N`)."""
    n = QUICK_N if quick else FULL_N
    common.log(f"dashboard: seeding {n:,} messages in SQLite, then {ROUNDS} runs ...")
    result = common.run_child("bench_dashboard.py", "measure", {"n": n})
    note = (f"{result['n']:,} messages, {result['campaigns']} campaigns, {result['clicks']:,} "
            f"clicks in range; seeding took {result['seed_s']:.1f} s")
    return [
        Figure("dashboard_stats_ms", result["stats_ms"], "ms", note=note),
        Figure("dashboard_api_stats_ms", result["api_ms"], "ms",
               note="GET /api/stats under uvicorn, JSON included"),
        Figure("dashboard_stats_statements", result["statements"], "statements",
               note="SQL statements of one dashboard_stats call (independent of n)"),
    ]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        common.child_main({"measure": measure})
    else:
        for figure in run(quick="--quick" in sys.argv):
            print(figure.result_line(), f"  # {figure.note}" if figure.note else "")
