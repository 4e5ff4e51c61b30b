"""The load generators of the webhook benchmark: a minimal asyncio HTTP/1.1 client.

Much cheaper per request than httpx, so the client is not what is measured. Everything here
runs in a child process of its own (``bench_webhooks.py load ...`` / ``... attack ...``):

* :func:`closed_loop`: N keep-alive connections sending prepared requests back to back,
  optionally with M more connections scraping ``/metrics`` in a loop at the same time;
* :func:`open_loop`: requests due at a fixed rate, each timed from its due moment;
* :func:`probe`: a closed loop of webhooks plus a ``/healthz`` probe on a fresh connection
  every few milliseconds (what a load balancer's health check does);
* :func:`attack`: holds N connections open that are idle, send their request head a few
  bytes at a time, or their body a byte at a time, reconnecting whenever the server closes
  one, and reports how many it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import common


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to 127.0.0.1:``port``."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> Tuple[int, bytes]:
        """Send ``request``; the answer's status and body."""
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
        """Close the connection."""
        self.writer.close()


def get(path: str, port: int, *, close: bool = False,
        headers: Optional[Dict[str, str]] = None) -> bytes:
    """A prepared GET request."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def post(path: str, port: int, body: bytes) -> bytes:
    """A prepared JSON POST request."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() \
        + body


async def _scrape_forever(port: int, counter: List[int], stop: asyncio.Event) -> None:
    conn = await Connection.open(port)
    request = get("/metrics", port)
    try:
        while not stop.is_set():
            status, _ = await conn.call(request)
            if status == 200:
                counter[0] += 1
    finally:
        conn.close()


async def closed_loop(port: int, requests: List[bytes], duration: float, *,
                      connections: int = 16, warmup: float = 1.0, cycle: bool = False,
                      flood: int = 0) -> Dict[str, Any]:
    """Requests back to back on ``connections`` connections for ``warmup`` + ``duration``
    seconds (only ``duration`` counted), with ``flood`` connections scraping ``/metrics`` in a
    loop meanwhile."""
    loop = asyncio.get_running_loop()
    opened = [await Connection.open(port) for _ in range(connections)]
    stop = asyncio.Event()
    scrapes = [0]
    scrapers = [asyncio.ensure_future(_scrape_forever(port, scrapes, stop))
                for _ in range(flood)]
    started = loop.time()
    counted_from, ends = started + warmup, started + warmup + duration
    statuses: Dict[int, int] = {}
    bad: List[str] = []
    done = 0
    counted_scrapes = [0, 0]
    cursor: Iterator[bytes] = itertools.cycle(requests) if cycle else iter(requests)

    ran_out = [False]

    async def worker(conn: Connection) -> None:
        nonlocal done
        for request in cursor:
            if loop.time() >= ends:
                return
            status, body = await conn.call(request)
            statuses[status] = statuses.get(status, 0) + 1
            if status != 200 and len(bad) < 3:
                bad.append(body[:200].decode(errors="replace"))
            if counted_from <= loop.time() < ends:
                done += 1
        ran_out[0] = True  # the requests ran out before the phase's end

    async def mark() -> None:
        await asyncio.sleep(max(0.0, counted_from - loop.time()))
        counted_scrapes[0] = scrapes[0]
        await asyncio.sleep(max(0.0, ends - loop.time()))
        counted_scrapes[1] = scrapes[0]

    await asyncio.gather(mark(), *(worker(c) for c in opened))
    stop.set()
    await asyncio.gather(*scrapers, return_exceptions=True)
    for conn in opened:
        conn.close()
    return {"rate": done / duration, "statuses": statuses, "bad": bad,
            "sent": sum(statuses.values()), "exhausted": ran_out[0],
            "scrapes_per_s": (counted_scrapes[1] - counted_scrapes[0]) / duration}


async def open_loop(port: int, requests: List[bytes], rate: float, duration: float, *,
                    connections: int = 64) -> Dict[str, Any]:
    """Each request due at its own moment (``rate`` a second); latency from that moment."""
    loop = asyncio.get_running_loop()
    opened = [await Connection.open(port) for _ in range(connections)]
    total = min(len(requests), int(rate * duration))
    queue: asyncio.Queue[Optional[Tuple[float, bytes]]] = asyncio.Queue()
    latencies: List[float] = []
    statuses: Dict[int, int] = {}

    async def worker(conn: Connection) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            due, request = item
            status, _ = await conn.call(request)
            latencies.append(loop.time() - due)
            statuses[status] = statuses.get(status, 0) + 1

    workers = [asyncio.ensure_future(worker(c)) for c in opened]
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
    for conn in opened:
        conn.close()
    return {"sent": total, "statuses": statuses,
            "p50_ms": common.percentile(latencies, 0.50) * 1000,
            "p99_ms": common.percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else float("nan"),
            "seconds": loop.time() - started}


async def _health_once(port: int) -> Tuple[bool, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        conn = await asyncio.wait_for(Connection.open(port), 5)
        try:
            status, _ = await asyncio.wait_for(conn.call(get("/healthz", port, close=True)), 5)
        finally:
            conn.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False, loop.time() - started
    return status == 200, loop.time() - started


async def probe(port: int, requests: List[bytes], duration: float, *,
                every: float = 0.02) -> Dict[str, Any]:
    """A closed loop of webhooks for ``duration`` seconds, and a ``/healthz`` probe on a fresh
    connection every ``every`` seconds meanwhile."""
    loop = asyncio.get_running_loop()
    latencies: List[float] = []
    failures = 0

    async def prober() -> None:
        nonlocal failures
        ends = loop.time() + 1.0 + duration
        pending = []
        while loop.time() < ends:
            pending.append(asyncio.ensure_future(_health_once(port)))
            await asyncio.sleep(every)
        for ok, seconds in await asyncio.gather(*pending):
            latencies.append(seconds)
            failures += 0 if ok else 1

    load, _ = await asyncio.gather(closed_loop(port, requests, duration), prober())
    return {"webhooks": load, "probes": len(latencies), "failures": failures,
            "p50_ms": common.percentile(latencies, 0.50) * 1000,
            "p99_ms": common.percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000 if latencies else float("nan")}


# -- the attacker ------------------------------------------------------------------------------
async def _hold(port: int, kind: str, head: bytes, held: List[int], counts: Dict[str, int],
                stop: asyncio.Event) -> None:
    """Keep one hostile connection of ``kind`` open, reconnecting when the server closes it."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        held[0] += 1
        try:
            if kind == "slow-head":
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            elif kind == "slow-body":
                writer.write(head)
            while not stop.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(4096), 2.0)
                except asyncio.TimeoutError:
                    if kind == "slow-head":
                        writer.write(b"X-Slow: 1\r\n")
                    elif kind == "slow-body":
                        writer.write(b" ")
                    continue
                if not data:
                    break  # the server closed it
                if data.startswith(b"HTTP/1.1 408"):
                    counts["timed_out_bodies"] += 1
        except (ConnectionError, OSError):
            pass
        finally:
            held[0] -= 1
            writer.close()
        counts["closed_by_server"] += 1


async def attack(port: int, idle: int, slow_heads: int, slow_bodies: int,
                 head: bytes) -> None:
    """Hold the hostile connections until stdin closes; print ``{"held": n, ...}`` lines."""
    common.raise_open_files(idle + slow_heads + slow_bodies + 256)
    held = [0]
    counts = {"refused": 0, "closed_by_server": 0, "timed_out_bodies": 0}
    stop = asyncio.Event()
    kinds = ["idle"] * idle + ["slow-head"] * slow_heads + ["slow-body"] * slow_bodies
    tasks = []
    for index, kind in enumerate(kinds):
        tasks.append(asyncio.ensure_future(_hold(port, kind, head, held, counts, stop)))
        if index % 100 == 99:
            await asyncio.sleep(0.05)  # a quick ramp, within the server's accept backlog
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    while not stdin_closed.done():
        print(json.dumps({"held": held[0], **counts}), flush=True)
        await asyncio.sleep(0.25)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
