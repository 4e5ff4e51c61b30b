"""``webhooks``: Kolmeya status callbacks ingested by ``smskit serve``, against a bare endpoint.

smskit: ``python -m smskit serve --log-level warning`` (uvicorn, one process) over a SQLite file
store seeded with sent messages; each request is a valid nested Kolmeya status callback
(``{"id", "reference", "messages": [{"id", "reference", "status_code": 3, ...}]}``) for a
different message, so each one is a durable write (the state change and its history line,
committed before the 200). Bare: a Starlette hello-world answering the same requests, under the
same uvicorn settings (``access_log=False``, smskit's log config, h11, asyncio).

The load comes from another process: a small asyncio HTTP/1.1 client over keep-alive
connections on 127.0.0.1 (much cheaper per request than httpx, so the client is not what is
measured). Maximum rate: closed loop, :data:`CONNECTIONS` connections, ``WARMUP`` seconds not
counted, then ``DURATION`` seconds; three rounds, alternating smskit and bare, and the best
round of each counts (the same for both, so that a burst of load from elsewhere on the machine
cannot decide the ratio). Latency: open loop at half the measured rate (each request
is due at its own moment; its latency runs from then, so a stalled server cannot hide it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

SECRET = "bench-webhook-secret"
PATH = f"/webhooks/kolmeya/status?token={SECRET}"
CONNECTIONS = 16
OPEN_CONNECTIONS = 64
WARMUP = 1.0
DURATION = {False: 4.0, True: 1.5}
ROUNDS = {False: 3, True: 1}
OPEN_DURATION = {False: 10.0, True: 2.0}
SEEDED = {False: 60_000, True: 12_000}
#: Seeded messages kept for the open loop.
OPEN_RESERVE = {False: 15_000, True: 4_000}


def message_id(i: int) -> str:
    """Our id of the ``i``-th seeded message (26 characters, like a ULID)."""
    return f"BENCH{i:021d}"


def callback_body(i: int) -> bytes:
    """The Kolmeya status callback for the ``i``-th seeded message: delivered."""
    return json.dumps({
        "id": f"req-{i // 100:08d}", "reference": f"batch-{i // 100:08d}",
        "messages": [{"id": f"kol-{i:010d}", "reference": message_id(i), "status_code": 3,
                      "status": "entregue"}],
    }).encode()


# -- children -------------------------------------------------------------------------------
def seed_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Store ``n`` sent messages (with Kolmeya ids) in the SQLite file ``db``."""
    from smskit.models import Message, State, utcnow
    from smskit.store.sql import SqlStore

    store = SqlStore(f"sqlite:///{args['db']}")
    now = utcnow()
    n = int(args["n"])
    for start in range(0, n, 1000):
        store.add_messages(
            Message(id=message_id(i), phone=common.e164_for(i), body="Olá! Sua fatura vence hoje.",
                    state=State.SENT, provider="kolmeya", provider_message_id=f"kol-{i:010d}",
                    provider_request_id=f"req-{i // 100:08d}", created_at=now, sent_at=now,
                    segments=1)
            for i in range(start, min(n, start + 1000)))
    store.close()
    return {"seeded": n}


def count_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """How many messages of the store are delivered, and how many history lines it has."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{args['db']}")
    with engine.connect() as conn:
        delivered = conn.execute(sa.text(
            "SELECT count(*) FROM messages WHERE state = 'delivered'")).scalar()
        events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar()
    engine.dispose()
    return {"delivered": delivered, "events": events}


def bare_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Serve a Starlette hello-world on ``port`` with ``smskit serve``'s uvicorn settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from smskit.server.app import log_config

    async def hello(request: Request) -> Response:
        return PlainTextResponse("Hello, world!")

    app = Starlette(routes=[Route("/webhooks/{provider}/{kind}", hello, methods=["POST"]),
                            Route("/healthz", hello, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=int(args["port"]), log_level="warning",
                access_log=False, log_config=log_config("warning"))
    return {}


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> Tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def _requests(port: int, start: int, count: int) -> List[bytes]:
    out = []
    for i in range(start, start + count):
        body = callback_body(i)
        out.append(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:"
                   + str(port).encode() + b"\r\nContent-Type: application/json\r\n"
                   + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    return out


async def _closed(port: int, requests: List[bytes], duration: float,
                  cycle: bool = False) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    connections = [await _Connection.open(port) for _ in range(CONNECTIONS)]
    started = loop.time()
    counted_from, ends = started + WARMUP, started + WARMUP + duration
    statuses: Dict[int, int] = {}
    bad: List[str] = []
    done = 0
    cursor = itertools.cycle(requests) if cycle else iter(requests)

    async def worker(conn: _Connection) -> None:
        nonlocal done
        for request in cursor:
            now = loop.time()
            if now >= ends:
                return
            status, body = await conn.call(request)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200 and len(bad) < 3:
                bad.append(body[:200].decode(errors="replace"))
            if counted_from <= loop.time() < ends:
                done += 1

    await asyncio.gather(*(worker(c) for c in connections))
    for conn in connections:
        conn.close()
    return {"rate": done / duration, "statuses": statuses, "bad": bad,
            "sent": sum(statuses.values()), "exhausted": loop.time() < ends}


async def _open(port: int, requests: List[bytes], rate: float,
                duration: float) -> Dict[str, Any]:
    loop = asyncio.get_running_loop()
    connections = [await _Connection.open(port) for _ in range(OPEN_CONNECTIONS)]
    total = min(len(requests), int(rate * duration))
    queue: asyncio.Queue[Optional[Tuple[float, bytes]]] = asyncio.Queue()
    latencies: List[float] = []
    statuses: Dict[int, int] = {}

    async def worker(conn: _Connection) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            due, request = item
            status, _ = await conn.call(request)
            latencies.append(loop.time() - due)
            statuses[status] = statuses.get(status, 0) + 1

    workers = [asyncio.ensure_future(worker(c)) for c in connections]
    started = loop.time()
    for k in range(total):
        due = started + k / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((due, requests[k]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    for conn in connections:
        conn.close()
    return {"sent": total, "statuses": statuses,
            "p50_ms": common.percentile(latencies, 0.50) * 1000,
            "p99_ms": common.percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else float("nan"),
            "seconds": loop.time() - started}


def load_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Closed-loop (maximum rate) or open-loop (latency at ``rate``) load on ``port``."""
    port, start, count = int(args["port"]), int(args["start"]), int(args["count"])
    requests = _requests(port, start, count)
    if args["mode"] == "closed":
        return asyncio.run(_closed(port, requests, float(args["duration"]),
                                   bool(args.get("cycle"))))
    return asyncio.run(_open(port, requests, float(args["rate"]), float(args["duration"])))


# -- the benchmark --------------------------------------------------------------------------
def _smskit_env(db: Path) -> Dict[str, str]:
    return {"SMSKIT_DATABASE_URL": f"sqlite:///{db}", "SMSKIT_WEBHOOK_SECRET": SECRET,
            "SMSKIT_PROVIDER": "kolmeya", "SMSKIT_KOLMEYA_TOKEN": common.SIM_TOKEN,
            "SMSKIT_KOLMEYA_BASE_URL": "http://127.0.0.1:9/api/v1"}


def _check(label: str, result: Mapping[str, Any]) -> None:
    statuses = {int(k): v for k, v in result["statuses"].items()}
    if set(statuses) != {200}:
        raise RuntimeError(f"webhooks: {label} answered {statuses}: {result.get('bad')}")


def run(quick: bool = False) -> List[Figure]:
    """Maximum rates of both servers (interleaved rounds, best of each), then smskit's latency
    at half its rate."""
    duration, seeded, rounds = DURATION[quick], SEEDED[quick], ROUNDS[quick]
    open_duration = OPEN_DURATION[quick]
    per_round = (seeded - OPEN_RESERVE[quick]) // rounds
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "smskit.db"
        common.log(f"webhooks: seeding {seeded:,} sent messages ...")
        common.run_child("bench_webhooks.py", "seed", {"db": str(db), "n": seeded})
        port, bare_port = common.free_port(), common.free_port()
        command = [common.PYTHON, "-m", "smskit", "serve", "--host", "127.0.0.1", "--port",
                   str(port), "--log-level", "warning"]
        bare_command = [common.PYTHON, str(common.HERE / "bench_webhooks.py"), "bare",
                        json.dumps({"port": bare_port})]
        with common.server_process(command, "/healthz", port, env=_smskit_env(db), cwd=tmp), \
                common.server_process(bare_command, "/healthz", bare_port):
            ours: List[Dict[str, Any]] = []
            bare: List[Dict[str, Any]] = []
            for round_ in range(rounds):
                common.log(f"webhooks: round {round_ + 1}/{rounds}: smskit serve, then bare "
                           f"Starlette, closed loop {duration:.0f} s each ...")
                result = common.run_child("bench_webhooks.py", "load", {
                    "port": port, "mode": "closed", "start": sum(r["sent"] for r in ours),
                    "count": per_round, "duration": duration})
                _check("smskit serve", result)
                if result["exhausted"]:
                    raise RuntimeError("webhooks: a round ran out of seeded messages; raise "
                                       "SEEDED")
                ours.append(result)
                result = common.run_child("bench_webhooks.py", "load", {
                    "port": bare_port, "mode": "closed", "start": 0, "count": 5_000,
                    "duration": duration, "cycle": True})
                _check("bare Starlette", result)
                bare.append(result)
            rate = max(float(r["rate"]) for r in ours)
            bare_rate = max(float(r["rate"]) for r in bare)
            common.log(f"webhooks: smskit serve, open loop at {rate / 2:.0f}/s ...")
            closed_sent = sum(int(r["sent"]) for r in ours)
            latency = common.run_child("bench_webhooks.py", "load", {
                "port": port, "mode": "open", "start": closed_sent,
                "count": seeded - closed_sent, "rate": rate / 2, "duration": open_duration})
            _check("smskit serve (open loop)", latency)
        stored = common.run_child("bench_webhooks.py", "count", {"db": str(db)})
    accepted = closed_sent + int(latency["sent"])
    if stored["delivered"] != accepted:
        raise RuntimeError(f"webhooks: {accepted} callbacks answered 200 but "
                           f"{stored['delivered']} messages are delivered in the store")
    if int(latency["sent"]) < int(rate / 2 * open_duration) - 1:
        raise RuntimeError("webhooks: the open loop ran out of seeded messages; raise SEEDED")
    ratio = rate / bare_rate
    shown = ", ".join(f"{float(r['rate']):.0f}" for r in ours)
    bare_shown = ", ".join(f"{float(r['rate']):.0f}" for r in bare)
    return [
        Figure("webhook_per_s", rate, "req/s",
               note=f"best of {rounds} rounds ({shown}); {CONNECTIONS} connections; every 200 "
                    f"is a committed write ({stored['delivered']:,} delivered in the store)"),
        Figure("webhook_ratio_vs_bare", ratio, "x", goal=">= 0.4", met=ratio >= 0.4,
               note=f"bare Starlette: {bare_rate:.0f} req/s, best of {rounds} rounds "
                    f"({bare_shown})"),
        Figure("webhook_p99_ms", float(latency["p99_ms"]), "ms",
               note=f"open loop at {rate / 2:.0f}/s for {open_duration:.0f} s; "
                    f"p50 {latency['p50_ms']:.1f} ms, max {latency['max_ms']:.1f} ms"),
    ]


if __name__ == "__main__":
    common.child_main({"seed": seed_child, "count": count_child, "bare": bare_child,
                       "load": load_child})
