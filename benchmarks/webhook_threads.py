"""Where a webhook server's CPU goes, thread by thread, under the webhook benchmark's load.

Not one of ``run.py``'s benchmarks (it prints no ``RESULT`` line): a diagnostic for the
``webhook_ratio_vs_bare`` goal. It serves, one after the other, ``smskit serve`` on a seeded
SQLite file (the default store), ``smskit serve`` on the memory store (no SQL at all: every
callback is for an unknown message, answered after the same gate, parse and hand-over) and
the bare Starlette app of :mod:`bench_webhooks`, each under the same closed loop
(:data:`bench_webhooks.CONNECTIONS` connections from another process). For each it prints the
callbacks per second and, from ``/proc``, each server thread's CPU per callback and share of
a core, and how busy the whole machine was::

    python benchmarks/webhook_threads.py            # 8 s per server
    python benchmarks/webhook_threads.py --seconds 4 --only smskit,bare

A server thread at 1.00 core is the limit; a process whose threads add up to one core while
the machine has idle cores is held by its GIL.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_webhooks as bw
import common

TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds of load before the CPU counters are read, and left out at the end.
SETTLE = 2.0
SERVERS = ("smskit", "smskit-memory", "bare")


def thread_cpu(pid: int) -> Dict[Tuple[int, str], float]:
    """CPU seconds (user + system) of each thread of ``pid``: ``(tid, name) -> seconds``; the
    main thread (the event loop) is named ``main``, the others by their thread id (Python
    before 3.14 gives its threads no name the system sees)."""
    found: Dict[Tuple[int, str], float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main (event loop)" if int(tid) == pid else f"thread {tid}"
        found[(int(tid), name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def machine_cpu() -> Tuple[float, float]:
    """Seconds of CPU the machine spent in all, and idle (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values) / TICKS, (values[3] + values[4]) / TICKS


@contextlib.contextmanager
def serving(kind: str, port: int, workdir: Path) -> Iterator[common.Process]:
    """The server ``kind`` (one of :data:`SERVERS`) on ``port``, until the block ends."""
    if kind == "bare":
        command = [common.PYTHON, str(common.HERE / "bench_webhooks.py"), "bare",
                   f'{{"port": {port}}}']
        with common.server_process(command, "/healthz", port, cwd=str(common.HERE)) as p:
            yield p
        return
    if kind == "smskit":
        db = workdir / "webhooks.db"
        common.run_child("bench_webhooks.py", "seed", {"db": str(db), "n": 120_000})
        env = bw._smskit_env(db)
    else:
        env = {**bw._smskit_env(workdir / "unused.db"), "SMSKIT_DATABASE_URL": "memory://"}
    with common.server_process(bw._serve(port), "/healthz", port, env=env) as p:
        yield p


def measure(kind: str, seconds: float, workdir: Path) -> Mapping[str, object]:
    """Callbacks per second and CPU per callback of each thread of one server."""
    port = common.free_port()
    marks: Dict[str, object] = {}
    with serving(kind, port, workdir) as server:
        pid = server.popen.pid

        def sample() -> None:
            time.sleep(SETTLE)
            marks["start"] = (time.monotonic(), thread_cpu(pid), machine_cpu())
            time.sleep(max(0.5, seconds - 2 * SETTLE))
            marks["end"] = (time.monotonic(), thread_cpu(pid), machine_cpu())

        sampler = threading.Thread(target=sample)
        sampler.start()
        load = common.run_child("bench_webhooks.py", "load", {
            "port": port, "mode": "closed", "start": 0, "count": 100_000,
            "duration": seconds})
        sampler.join()
    (t0, threads0, (all0, idle0)), (t1, threads1, (all1, idle1)) = \
        marks["start"], marks["end"]  # type: ignore[misc]
    wall = t1 - t0
    callbacks = float(load["rate"]) * wall
    rows: List[Tuple[str, float, float]] = []
    for key, used in threads1.items():
        spent = used - threads0.get(key, 0.0)
        if spent > 0.01 * wall:
            rows.append((key[1], 1e6 * spent / callbacks, spent / wall))
    return {"rate": float(load["rate"]), "threads": rows,
            "machine_busy": (all1 - all0 - (idle1 - idle0)) / wall,
            "machine_cores": (all1 - all0) / wall}


def main() -> None:
    """Measure each server asked for and print what it found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default=",".join(SERVERS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [k.strip() for k in args.only.split(",") if k.strip()]:
            if kind not in SERVERS:
                raise SystemExit(f"--only: {kind!r} is not one of {', '.join(SERVERS)}")
            found = measure(kind, args.seconds, Path(tmp))
            print(f"{kind}: {found['rate']:,.0f} callbacks/s; machine "
                  f"{found['machine_busy']:.2f} of {found['machine_cores']:.2f} cores busy")
            for name, per_callback, share in found["threads"]:  # type: ignore[attr-defined]
                print(f"  {name:<20} {per_callback:7.1f} us a callback"
                      f"  {share:.2f} core")


if __name__ == "__main__":
    main()
