"""``webhooks``: Kolmeya status callbacks ingested by ``smskit serve``, against a bare endpoint,
and the same server under hostile or careless clients.

smskit: ``python -m smskit serve --log-level warning`` (uvicorn, one process) over a SQLite file
store seeded with sent messages; each request is a valid nested Kolmeya status callback
(``{"id", "reference", "messages": [{"id", "reference", "status_code": 3, ...}]}``) for a
different message, so each one is a durable write (the state change and its history line,
committed before the 200). Bare: a Starlette hello-world answering the same requests, under the
same uvicorn settings (``access_log=False``, smskit's log config, h11, asyncio).

The load comes from other processes (:mod:`loadgen`: a small asyncio HTTP/1.1 client over
keep-alive connections on 127.0.0.1). Maximum rate: closed loop, :data:`CONNECTIONS`
connections, ``WARMUP`` seconds not counted, then ``DURATION`` seconds; three rounds
alternating smskit (``synchronous=FULL``, the default) and bare, and the best round of each
counts (the same for both, so that a burst of load from elsewhere on the machine cannot decide
the ratio). The comparisons that must be exact on a shared machine alternate short phases in
:data:`PAIRS` pairs and compare the sums, so a change of load from elsewhere falls on both
sides alike: smskit alone against smskit while :data:`FLOOD` more connections scrape
``/metrics`` in a loop; ``synchronous=FULL`` against ``NORMAL`` (the previous default; a
second server on its own store), with :data:`CONNECTIONS` connections and with one alone (no
group commit to share the fsync). Then latency in an open loop at half the best rate (each
request is due at its own moment; its latency runs from then, so a stalled server cannot hide
it), and last :data:`HOSTILE` connections held open by an attacker process (idle ones, request
heads sent a few bytes every 2 s, bodies a byte every 2 s; reconnected whenever the server
closes them) while webhooks run in a closed loop and ``/healthz`` is probed on a fresh
connection every 20 ms, against a closed loop just before the attacker starts.

Last, several processes: ``smskit serve --workers 1`` and ``--workers 2`` (each over a store
of its own), each against the bare app run by uvicorn in as many processes, in :data:`PAIRS`
rounds of four short phases (smskit 1, bare 1, smskit 2, bare 2) whose sums give
``webhook_ratio_vs_bare_w1`` and ``_w2``; on SQLite files, then again on PostgreSQL (the
``_pg`` figures) when ``SMSKIT_BENCH_POSTGRES_URL`` names a database the benchmark may empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import loadgen
from common import Figure

SECRET = "bench-webhook-secret"
PATH = f"/webhooks/kolmeya/status?token={SECRET}"
CONNECTIONS = 16
WARMUP = 1.0
DURATION = {False: 4.0, True: 1.5}
ROUNDS = {False: 3, True: 1}
#: Alternating phases of the paired comparisons, and each phase's counted seconds.
PAIRS = {False: 6, True: 2}
PAIR_DURATION = {False: 2.0, True: 1.0}
PAIR_WARMUP = 0.5
OPEN_DURATION = {False: 10.0, True: 2.0}
PROBE_DURATION = {False: 10.0, True: 2.0}
#: /metrics scrapers looping during the flood rounds.
FLOOD = 20
#: Hostile connections: (idle, slow heads, slow bodies).
HOSTILE = {False: (1200, 500, 300), True: (300, 150, 50)}
#: Messages seeded in the FULL and the NORMAL store.
SEEDED = {False: (240_000, 150_000), True: (40_000, 12_000)}
#: Messages seeded in each store of the worker comparison (one per worker count).
SEEDED_WORKERS = {False: 120_000, True: 10_000}
#: Worker counts compared side by side with bare Starlette at the same count.
WORKER_COUNTS = (1, 2)
#: Most requests prepared for one closed-loop phase.
PHASE_CAP = 40_000


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
    """Store ``n`` sent messages (with Kolmeya ids), from the ``first``-th, in the SQLite file
    ``db`` (or the store at ``url``)."""
    from smskit.models import Message, State, utcnow
    from smskit.store.sql import SqlStore

    url = args.get("url") or f"sqlite:///{args['db']}?synchronous=normal"  # seeding: speed only
    store = SqlStore(url)
    now = utcnow()
    first = int(args.get("first", 0))
    end = first + int(args["n"])
    for start in range(first, end, 1000):
        store.add_messages(
            Message(id=message_id(i), phone=common.e164_for(i), body="Olá! Sua fatura vence hoje.",
                    state=State.SENT, provider="kolmeya", provider_message_id=f"kol-{i:010d}",
                    provider_request_id=f"req-{i // 100:08d}", created_at=now, sent_at=now,
                    segments=1)
            for i in range(start, min(end, start + 1000)))
    store.close()
    return {"seeded": end - first}


def count_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """How many messages of the store (the SQLite file ``db``, or ``url``) are delivered, among
    the ``n`` seeded from the ``first``-th, and how many history lines it has."""
    import sqlalchemy as sa

    url = args.get("url") or f"sqlite:///{args['db']}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    first = int(args.get("first", 0))
    bounds = {"low": message_id(first), "high": message_id(first + int(args.get("n", 10**12)))}
    with engine.connect() as conn:
        delivered = conn.execute(sa.text(
            "SELECT count(*) FROM messages WHERE state = 'delivered' AND id >= :low "
            "AND id < :high"), bounds).scalar()
        events = conn.execute(sa.text("SELECT count(*) FROM events")).scalar()
    engine.dispose()
    return {"delivered": delivered, "events": events}


def bare_app() -> Any:
    """A Starlette hello-world on the webhook and health routes (uvicorn's factory)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return PlainTextResponse("Hello, world!")

    return Starlette(routes=[Route("/webhooks/{provider}/{kind}", hello, methods=["POST"]),
                             Route("/healthz", hello, methods=["GET"])])


def bare_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Serve :func:`bare_app` on ``port`` with ``smskit serve``'s uvicorn settings, in
    ``workers`` processes (uvicorn's own multi-process mode, as ``smskit serve --workers``)."""
    import uvicorn

    from smskit.server.app import log_config

    workers = int(args.get("workers", 1))
    options: Dict[str, Any] = {"host": "127.0.0.1", "port": int(args["port"]),
                               "log_level": "warning", "access_log": False,
                               "log_config": log_config("warning", with_pid=workers > 1)}
    if workers == 1:
        uvicorn.run(bare_app(), **options)
    else:
        uvicorn.run("bench_webhooks:bare_app", factory=True, workers=workers,
                    app_dir=str(common.HERE), **options)
    return {}


def _requests(port: int, start: int, count: int) -> List[bytes]:
    return [loadgen.post(PATH, port, callback_body(i)) for i in range(start, start + count)]


def load_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Closed loop (maximum rate; ``flood`` /metrics scrapers meanwhile), open loop (latency at
    ``rate``), or probe (closed loop plus /healthz probes) on ``port``."""
    import asyncio

    port, start, count = int(args["port"]), int(args["start"]), int(args["count"])
    requests = _requests(port, start, count)
    mode = args["mode"]
    if mode == "closed":
        return asyncio.run(loadgen.closed_loop(
            port, requests, float(args["duration"]), cycle=bool(args.get("cycle")),
            connections=int(args.get("connections", CONNECTIONS)),
            warmup=float(args.get("warmup", WARMUP)), flood=int(args.get("flood", 0))))
    if mode == "probe":
        return asyncio.run(loadgen.probe(port, requests, float(args["duration"])))
    return asyncio.run(loadgen.open_loop(port, requests, float(args["rate"]),
                                         float(args["duration"])))


def attack_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Hold hostile connections on ``port`` until stdin closes (see :func:`loadgen.attack`)."""
    import asyncio

    port = int(args["port"])
    head = (f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n\r\n{{").encode()
    asyncio.run(loadgen.attack(port, int(args["idle"]), int(args["slow_heads"]),
                               int(args["slow_bodies"]), head))
    return {}


# -- the benchmark --------------------------------------------------------------------------
def _smskit_env(db: Path, synchronous: str = "full") -> Dict[str, str]:
    return {"SMSKIT_DATABASE_URL": f"sqlite:///{db}?synchronous={synchronous}",
            "SMSKIT_WEBHOOK_SECRET": SECRET,
            "SMSKIT_PROVIDER": "kolmeya", "SMSKIT_KOLMEYA_TOKEN": common.SIM_TOKEN,
            "SMSKIT_KOLMEYA_BASE_URL": "http://127.0.0.1:9/api/v1"}


def _check(label: str, result: Mapping[str, Any]) -> None:
    statuses = {int(k): v for k, v in result["statuses"].items()}
    if set(statuses) != {200}:
        raise RuntimeError(f"webhooks: {label} answered {statuses}: {result.get('bad')}")


class _Store:
    """One seeded store behind one server: what its phases have used of it (the ``seeded``
    messages from the ``first``-th of the SQLite file ``db``, or of the store at ``url``)."""

    def __init__(self, label: str, db: Optional[Path], port: int, seeded: int, *,
                 url: Optional[str] = None, first: int = 0) -> None:
        self.label, self.db, self.port, self.seeded = label, db, port, seeded
        self.url, self.first = url, first
        self.used = 0

    def phase(self, mode: str, **args: Any) -> Dict[str, Any]:
        """Run one load phase on the next unused messages; check every answer was a 200."""
        count = min(self.seeded - self.used, PHASE_CAP)
        result = common.run_child("bench_webhooks.py", "load", {
            "port": self.port, "mode": mode, "start": self.first + self.used, "count": count,
            **args})
        webhooks = result["webhooks"] if mode == "probe" else result
        if webhooks.get("exhausted"):
            raise RuntimeError(f"webhooks: {self.label} ran out of seeded messages; raise "
                               "SEEDED")
        _check(f"{self.label} ({mode})", webhooks)
        self.used += int(webhooks["sent"])
        return result

    def verify(self) -> int:
        """Every 200 answered is a delivered message in the store; how many there are."""
        where = {"url": self.url} if self.url else {"db": str(self.db)}
        stored = common.run_child("bench_webhooks.py", "count", {
            **where, "first": self.first, "n": self.seeded})
        if stored["delivered"] != self.used:
            raise RuntimeError(f"webhooks: {self.label}: {self.used} callbacks answered 200 but "
                               f"{stored['delivered']} messages are delivered in the store")
        return int(stored["delivered"])


class _Attacker:
    """The attacker child: started, waited for until it holds its connections, stopped."""

    def __init__(self, port: int, quick: bool) -> None:
        idle, heads, bodies = HOSTILE[quick]
        self.target = idle + heads + bodies
        args = {"port": port, "idle": idle, "slow_heads": heads, "slow_bodies": bodies}
        self.popen = subprocess.Popen(
            [common.PYTHON, str(common.HERE / "bench_webhooks.py"), "attack", json.dumps(args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=common.child_env(), text=True)
        self.samples: List[Tuple[float, Dict[str, int]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            if line.startswith("{"):
                self.samples.append((time.monotonic(), json.loads(line)))

    def wait_until_held(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.samples or self.samples[-1][1]["held"] < self.target:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                held = self.samples[-1][1]["held"] if self.samples else 0
                raise RuntimeError(f"webhooks: the attacker holds {held} of {self.target} "
                                   "connections")
            time.sleep(0.1)

    def held_between(self, start: float, end: float) -> List[int]:
        return [sample["held"] for when, sample in self.samples if start <= when <= end]

    def stop(self) -> Dict[str, int]:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
        return self.samples[-1][1] if self.samples else {}


def _best(results: List[Dict[str, Any]]) -> float:
    return max(float(r["rate"]) for r in results)


def _shown(results: List[Dict[str, Any]]) -> str:
    return ", ".join(f"{float(r['rate']):.0f}" for r in results)


def _pairs(count: int, first: Any, second: Any) -> Tuple[
        List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``count`` alternations of two phases (``first()``, then ``second()``)."""
    ones: List[Dict[str, Any]] = []
    twos: List[Dict[str, Any]] = []
    for _ in range(count):
        ones.append(first())
        twos.append(second())
    return ones, twos


def _ratio(ones: List[Dict[str, Any]], twos: List[Dict[str, Any]]) -> Tuple[float, str]:
    """Sum of the second side's rates over the first's, and each pair's ratio (as text)."""
    total = sum(float(r["rate"]) for r in twos) / sum(float(r["rate"]) for r in ones)
    each = sorted(float(b["rate"]) / float(a["rate"]) for a, b in zip(ones, twos))
    return total, ", ".join(f"{r:.2f}" for r in each)


def run(quick: bool = False) -> List[Figure]:
    """The rounds against bare Starlette, the paired comparisons (a /metrics flood; FULL
    against NORMAL), the open loop, then the hostile connections."""
    duration, rounds = DURATION[quick], ROUNDS[quick]
    pairs, pair_seconds = PAIRS[quick], PAIR_DURATION[quick]
    seeded_full, seeded_normal = SEEDED[quick]
    with tempfile.TemporaryDirectory(dir=str(common.HERE)) as tmp:  # a real disk: fsync costs
        full_db, normal_db = Path(tmp) / "full.db", Path(tmp) / "normal.db"
        common.log(f"webhooks: seeding {seeded_full:,} + {seeded_normal:,} sent messages ...")
        common.run_child("bench_webhooks.py", "seed", {"db": str(full_db), "n": seeded_full})
        common.run_child("bench_webhooks.py", "seed", {"db": str(normal_db), "n": seeded_normal})
        port, normal_port, bare_port = common.free_port(), common.free_port(), common.free_port()

        bare_command = [common.PYTHON, str(common.HERE / "bench_webhooks.py"), "bare",
                        json.dumps({"port": bare_port})]
        full = _Store("smskit serve (synchronous=FULL)", full_db, port, seeded_full)
        normal = _Store("smskit serve (synchronous=NORMAL)", normal_db, normal_port,
                        seeded_normal)
        short = {"duration": pair_seconds, "warmup": PAIR_WARMUP}
        with common.server_process(_serve(port), "/healthz", port, env=_smskit_env(full_db),
                                   cwd=tmp), \
                common.server_process(_serve(normal_port), "/healthz", normal_port,
                                      env=_smskit_env(normal_db, "normal"), cwd=tmp), \
                common.server_process(bare_command, "/healthz", bare_port):
            ours: List[Dict[str, Any]] = []
            bare: List[Dict[str, Any]] = []
            for round_ in range(rounds):
                common.log(f"webhooks: round {round_ + 1}/{rounds}: smskit serve, then bare "
                           f"Starlette, closed loop {duration:.0f} s each ...")
                ours.append(full.phase("closed", duration=duration))
                result = common.run_child("bench_webhooks.py", "load", {
                    "port": bare_port, "mode": "closed", "start": 0, "count": 5_000,
                    "duration": duration, "cycle": True})
                _check("bare Starlette", result)
                bare.append(result)
            common.log(f"webhooks: {pairs} pairs: alone / under {FLOOD} /metrics scrapers ...")
            alone, flooded = _pairs(pairs, lambda: full.phase("closed", **short),
                                    lambda: full.phase("closed", flood=FLOOD, **short))
            common.log(f"webhooks: {pairs} pairs: synchronous FULL / NORMAL, {CONNECTIONS} "
                       "connections, then one ...")
            synced, previous = _pairs(pairs, lambda: full.phase("closed", **short),
                                      lambda: normal.phase("closed", **short))
            one = {**short, "connections": 1}
            one_full, one_normal = _pairs(max(2, pairs // 2), lambda: full.phase("closed", **one),
                                          lambda: normal.phase("closed", **one))
            rate = _best(ours)
            common.log(f"webhooks: open loop at {rate / 2:.0f}/s ...")
            latency = full.phase("open", rate=rate / 2, duration=OPEN_DURATION[quick])
            if int(latency["sent"]) < int(rate / 2 * OPEN_DURATION[quick]) - 1:
                raise RuntimeError("webhooks: the open loop ran out of seeded messages; raise "
                                   "SEEDED")
            before = full.phase("closed", duration=PROBE_DURATION[quick])
            attacker = _Attacker(port, quick)
            try:
                common.log(f"webhooks: {attacker.target:,} hostile connections, then webhooks "
                           "and /healthz probes ...")
                attacker.wait_until_held()
                began = time.monotonic()
                probed = full.phase("probe", duration=PROBE_DURATION[quick])
                held = attacker.held_between(began, time.monotonic())
            finally:
                counts = attacker.stop()
        delivered = full.verify()
        normal.verify()
    figures = _figures(rounds, ours, bare, latency, delivered, rate)
    figures += _paired_figures(alone, flooded, synced, previous, one_full, one_normal)
    figures += _hostile_figures(before, probed, held, counts, attacker.target)
    figures += _workers(quick)
    return figures


def _serve(port: int, workers: int = 1) -> List[str]:
    return [common.PYTHON, "-m", "smskit", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--workers", str(workers)]


def _postgres_url() -> Optional[str]:
    return os.environ.get("SMSKIT_BENCH_POSTGRES_URL")


def _workers(quick: bool) -> List[Figure]:
    """The worker comparison on a SQLite file, and on PostgreSQL when
    ``SMSKIT_BENCH_POSTGRES_URL`` names one the benchmark may empty."""
    figures = _workers_on(quick, None)
    url = _postgres_url()
    if url is None:
        common.log("webhooks: workers on PostgreSQL skipped (set SMSKIT_BENCH_POSTGRES_URL)")
        return figures
    return figures + _workers_on(quick, url)


def _workers_on(quick: bool, pg_url: Optional[str]) -> List[Figure]:
    """``smskit serve --workers 1`` and ``--workers 2``, each against bare Starlette in as many
    processes: :data:`PAIRS` rounds of four short closed-loop phases (smskit 1, bare 1,
    smskit 2, bare 2), each count's ratio the sum of its smskit phases over its bare ones. The
    two servers have a store each: SQLite files, or (``pg_url``) disjoint messages of one
    PostgreSQL database."""
    seeded = SEEDED_WORKERS[quick]
    short = {"duration": PAIR_DURATION[quick], "warmup": PAIR_WARMUP}
    where = "SQLite" if pg_url is None else "PostgreSQL"
    suffix = "" if pg_url is None else "_pg"
    if pg_url is not None:
        import bench_scaleout

        bench_scaleout.empty(pg_url)
    with tempfile.TemporaryDirectory(dir=str(common.HERE)) as tmp, \
            contextlib.ExitStack() as stack:
        stores: Dict[int, _Store] = {}
        bare_ports: Dict[int, int] = {}
        for k, workers in enumerate(WORKER_COUNTS):
            db = Path(tmp) / f"workers{workers}.db"
            first = k * seeded if pg_url else 0
            common.log(f"webhooks: seeding {seeded:,} sent messages on {where} for {workers} "
                       "worker(s) ...")
            common.run_child("bench_webhooks.py", "seed", {
                "db": str(db), "url": pg_url, "first": first, "n": seeded})
            port, bare_port = common.free_port(), common.free_port()
            env = _smskit_env(db)
            if pg_url is not None:
                env["SMSKIT_DATABASE_URL"] = pg_url
            stack.enter_context(common.server_process(_serve(port, workers), "/healthz", port,
                                                      env=env, cwd=tmp))
            stack.enter_context(common.server_process(
                [common.PYTHON, str(common.HERE / "bench_webhooks.py"), "bare",
                 json.dumps({"port": bare_port, "workers": workers})], "/healthz", bare_port))
            stores[workers] = _Store(f"smskit serve --workers {workers} ({where})", db, port,
                                     seeded, url=pg_url, first=first)
            bare_ports[workers] = bare_port
        ours: Dict[int, List[Dict[str, Any]]] = {w: [] for w in WORKER_COUNTS}
        bare: Dict[int, List[Dict[str, Any]]] = {w: [] for w in WORKER_COUNTS}
        loads: List[str] = []
        common.log(f"webhooks: {PAIRS[quick]} rounds on {where}: smskit and bare Starlette at "
                   f"{' and '.join(map(str, WORKER_COUNTS))} worker(s) ...")
        for _ in range(PAIRS[quick]):
            for workers in WORKER_COUNTS:
                ours[workers].append(stores[workers].phase("closed", **short))
                result = common.run_child("bench_webhooks.py", "load", {
                    "port": bare_ports[workers], "mode": "closed", "start": 0, "count": 5_000,
                    "cycle": True, **short})
                _check(f"bare Starlette, {workers} worker(s)", result)
                bare[workers].append(result)
            loads.append(common.load_text())
        for store in stores.values():
            store.verify()
    figures: List[Figure] = []
    for workers in WORKER_COUNTS:
        ratio, each = _ratio(bare[workers], ours[workers])
        figures.append(Figure(
            f"webhook_per_s_w{workers}{suffix}", mean(ours[workers]), "req/s",
            note=f"smskit serve --workers {workers} on {where}, mean of {len(ours[workers])} "
                 f"phases ({_shown(ours[workers])}); {CONNECTIONS} connections"))
        figures.append(Figure(
            f"webhook_ratio_vs_bare_w{workers}{suffix}", ratio, "x", goal=">= 0.4",
            met=ratio >= 0.4,
            note=f"bare Starlette in {workers} process(es): {mean(bare[workers]):.0f} req/s "
                 f"({_shown(bare[workers])}); per round {each}; {loads[-1]}"))
    scale = mean(ours[WORKER_COUNTS[-1]]) / mean(ours[WORKER_COUNTS[0]])
    figures.append(Figure(
        f"webhook_w2_vs_w1{suffix}", scale, "x",
        note=f"smskit serve on {where}, 2 processes over 1, same rounds (bare: "
             f"{mean(bare[2]) / mean(bare[1]):.2f}); {', '.join(loads)}"))
    return figures


def _figures(rounds: int, ours: List[Dict[str, Any]], bare: List[Dict[str, Any]],
             latency: Dict[str, Any], delivered: int, rate: float) -> List[Figure]:
    bare_rate = _best(bare)
    ratio = rate / bare_rate
    return [
        Figure("webhook_per_s", rate, "req/s",
               note=f"best of {rounds} rounds ({_shown(ours)}); {CONNECTIONS} connections; "
                    f"synchronous=FULL; every 200 is a committed write ({delivered:,} "
                    "delivered in the store)"),
        Figure("webhook_ratio_vs_bare", ratio, "x", goal=">= 0.4", met=ratio >= 0.4,
               note=f"bare Starlette: {bare_rate:.0f} req/s, best of {rounds} rounds "
                    f"({_shown(bare)})"),
        Figure("webhook_p99_ms", float(latency["p99_ms"]), "ms",
               note=f"open loop at {rate / 2:.0f}/s for {latency['seconds']:.0f} s; "
                    f"p50 {latency['p50_ms']:.1f} ms, max {latency['max_ms']:.1f} ms"),
    ]


def mean(results: List[Dict[str, Any]]) -> float:
    """The mean rate of some phases."""
    return sum(float(r["rate"]) for r in results) / len(results)


def _paired_figures(alone: List[Dict[str, Any]], flooded: List[Dict[str, Any]],
                    synced: List[Dict[str, Any]], previous: List[Dict[str, Any]],
                    one_full: List[Dict[str, Any]], one_normal: List[Dict[str, Any]]
                    ) -> List[Figure]:
    flood_ratio, flood_each = _ratio(alone, flooded)
    sync_ratio, sync_each = _ratio(previous, synced)
    single_ratio, single_each = _ratio(one_normal, one_full)
    scrapes = sum(float(r["scrapes_per_s"]) for r in flooded) / len(flooded)
    return [
        Figure("webhook_ratio_metrics_flood", flood_ratio, "x", goal=">= 0.9",
               met=flood_ratio >= 0.9,
               note=f"{mean(flooded):.0f} req/s with {FLOOD} clients scraping /metrics in a "
                    f"loop ({scrapes:.1f} scrapes/s answered) vs {mean(alone):.0f} alone; "
                    f"{len(alone)} alternating pairs, per pair {flood_each}"),
        Figure("webhook_per_s_sync_normal", mean(previous), "req/s",
               note=f"the previous default, alternating with FULL ({mean(synced):.0f} req/s) "
                    f"in {len(synced)} pairs, {CONNECTIONS} connections"),
        Figure("webhook_sync_full_vs_normal", sync_ratio, "x",
               note=f"FULL / NORMAL, {CONNECTIONS} connections (group commit shares each "
                    f"fsync); per pair {sync_each}"),
        Figure("webhook_sync_full_vs_normal_1conn", single_ratio, "x",
               note=f"one connection alone, every callback its own commit: "
                    f"{mean(one_full):.0f} vs {mean(one_normal):.0f} req/s; per pair "
                    f"{single_each}"),
    ]


def _hostile_figures(before: Dict[str, Any], probed: Dict[str, Any], held: List[int],
                     counts: Dict[str, int], target: int) -> List[Figure]:
    webhooks = probed["webhooks"]
    idle_ratio = float(webhooks["rate"]) / float(before["rate"])
    p99 = float(probed["p99_ms"])
    held_text = f"{min(held):,}-{max(held):,}" if held else "?"
    return [
        Figure("healthz_p99_ms_2000_idle", p99, "ms", goal="< 1000", met=p99 < 1000,
               note=f"{target:,} hostile connections held ({held_text} during the probe; "
                    f"{counts.get('closed_by_server', 0):,} closed by the server's timeouts); "
                    f"{probed['probes']} probes on fresh connections, {probed['failures']} "
                    f"failed; p50 {probed['p50_ms']:.1f} ms, max {probed['max_ms']:.1f} ms"),
        Figure("webhook_ratio_2000_idle", idle_ratio, "x",
               note=f"{float(webhooks['rate']):.0f} req/s, all 200, while those connections "
                    f"were held and probed, vs {float(before['rate']):.0f} just before"),
    ]


if __name__ == "__main__":
    common.child_main({"seed": seed_child, "count": count_child, "bare": bare_child,
                       "load": load_child, "attack": attack_child})
