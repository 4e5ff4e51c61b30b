"""``faults``: kill -9 a worker in the middle of a bulk send to a faulty gateway, restart it.

Each trial: a fresh SQLite store; the Kolmeya simulator (a uvicorn server in this process, so
its per-reference counts can be read) answers 10% of requests 429 (Retry-After 1 s), 5% 500,
and holds 2% of accepted sends for 3 s, past the client's 1 s read timeout. A worker process
runs the bulk send (``send_many`` with an idempotency prefix, dispatching as it goes, 100
messages a request so that each trial makes enough requests to meet the faults) and then the
worker loop (:class:`smskit.worker.Worker`) until nothing is left to send. It is killed with
SIGKILL at a random moment of the send, then started again with the same command, which
resumes the bulk send and reconciles what the dead one left in flight; it exits when every
message is settled.

Figures: ``faults_lost``, messages of the input that did not end sent (and accepted by the
gateway) or in a final state; ``faults_sent_twice``, messages the gateway accepted more than
once. Both are summed over every trial.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

FULL_TRIALS, QUICK_TRIALS = 50, 4
FULL_N, QUICK_N = 1_000, 300
LANES = 2  # trials run two at a time, each lane with its own simulator
BATCH = 100
STALE_AFTER = 1.0  # seconds; the restarted worker takes longer than that to start
FAULTS: Dict[str, Any] = {
    "fail_429_rate": 0.10, "retry_after": 1, "fail_500_rate": 0.05,
    "timeout_after_accept_rate": 0.02, "hang_seconds": 3.0,
}
READY = "FAULT-WORKER-SENDING"
SETTLED = ("sent", "delivered", "error", "expired")
FINAL = ("rejected", "canceled")


def worker_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """The bulk send, then the worker loop until every message is settled (what is killed)."""
    import datetime as dt
    import threading

    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.models import State
    from smskit.store.sql import SqlStore
    from smskit.worker import Worker

    settings = Settings.load(environ={}, **common.kit_settings(
        args["sim"], kolmeya_timeout="1", kolmeya_connect_timeout="1",
        kolmeya_max_retry_wait="5"))
    store = SqlStore(f"sqlite:///{args['db']}")
    kit = SmsKit(settings, store=store)
    kit.provider().max_batch = BATCH  # more, smaller requests: more of them meet a fault
    print(READY, flush=True)
    summary = kit.send_many(common.rows(int(args["n"])), common.TEMPLATE,
                            idempotency_prefix="faults", campaign_id="faults")
    stop = threading.Event()

    def settled() -> bool:
        counts = store.count_by_state("kolmeya")
        return (not counts.get(("kolmeya", State.OUTGOING))
                and not store.batches(status="claimed")
                and not store.batches(status="ambiguous"))

    def watch() -> None:
        while not stop.is_set():
            if settled():
                stop.set()
            stop.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    Worker(kit, interval=0.1, stale_after=dt.timedelta(seconds=STALE_AFTER),
           poll_replies=False).run(stop_event=stop)
    kit.close()
    return {"duplicates": summary.duplicates}


def _start_worker(args: Mapping[str, Any]) -> subprocess.Popen[str]:
    import json

    return subprocess.Popen(
        [common.PYTHON, str(Path(__file__).resolve()), "worker", json.dumps(dict(args))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=common.child_env())


def _wait_ready(popen: subprocess.Popen[str]) -> float:
    assert popen.stdout is not None
    for line in popen.stdout:
        if line.startswith(READY):
            return time.monotonic()
    raise RuntimeError(f"fault worker exited ({popen.wait()}) before sending")


def _finish(popen: subprocess.Popen[str], timeout: float) -> None:
    try:
        popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.communicate()
        raise RuntimeError(f"the restarted worker did not settle within {timeout:.0f} s") from None
    if popen.returncode != 0:
        raise RuntimeError(f"the restarted worker failed with exit code {popen.returncode}")


def trial(sim: Any, sim_url: str, n: int, seed: int, kill_within: float,
          tmp: str) -> Dict[str, Any]:
    """One trial: send, kill -9 at a random moment, restart, check every message."""
    from smskit.models import State
    from smskit.store.sql import SqlStore

    sim.reset()
    sim.configure(seed=seed, **FAULTS)
    rng = random.Random(seed)
    db = Path(tmp) / f"trial-{seed}.db"
    args = {"db": str(db), "sim": sim_url, "n": n}
    first = _start_worker(args)
    started = _wait_ready(first)
    delay = rng.uniform(0.0, kill_within)
    time.sleep(max(0.0, started + delay - time.monotonic()))
    killed = first.poll() is None
    if killed:
        os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    second = _start_worker(args)
    _wait_ready(second)
    _finish(second, timeout=120.0)
    accepted = sim.accepted_references()
    store = SqlStore(f"sqlite:///{db}")
    try:
        stored = {m.idempotency_key: m for m in store.list_messages(limit=10 * n)
                  if m.idempotency_key}
    finally:
        store.close()
    lost = twice = 0
    states: Dict[str, int] = {}
    for i in range(n):
        message = stored.get(f"faults:{common.e164_for(i)}")
        state = message.state.value if message is not None else "never stored"
        states[state] = states.get(state, 0) + 1
        count = accepted[message.id] if message is not None else 0
        if count > 1:
            twice += 1
        if message is None:
            lost += 1
        elif message.state in (State.REJECTED, State.CANCELED):
            continue
        elif message.state.value not in SETTLED or count == 0:
            lost += 1  # never sent, or marked sent while the gateway never accepted it
    stats = sim.stats()
    return {"seed": seed, "killed": killed, "kill_after": delay, "lost": lost,
            "sent_twice": twice, "states": states, "requests": stats["requests"],
            "accepted": stats["messages"]}


class Answers:
    """An ASGI wrapper counting the gateway's answers: status codes, and answers held past
    the client's read timeout (the accepted sends the simulator hangs on)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Dict[str, int] = {}

    def take(self) -> Dict[str, int]:
        """The counts so far, and start again from zero."""
        counts, self.counts = self.counts, {}
        return counts

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()

        async def counting_send(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                endpoint = scope["path"].rpartition("/")[2]
                held = time.monotonic() - started > 1.0
                key = f"{endpoint} {'held' if held else message['status']}"
                self.counts[key] = self.counts.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, counting_send)


def _lane(lane: int, seeds: List[int], n: int, kill_within: float) -> List[Dict[str, Any]]:
    from smskit.testing.servers import serve_in_thread
    from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

    simulator = KolmeyaSimulator(SimulatorConfig(token=common.SIM_TOKEN, seed=lane))
    answers = Answers(simulator.app)
    out = []
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(answers) as base:
        try:
            for seed in seeds:
                answers.take()
                result = trial(simulator, base, n, seed, kill_within, tmp)
                result["answers"] = answers.take()
                shown = ", ".join(f"{k}: {v}" for k, v in sorted(result["answers"].items()))
                common.log(f"faults: trial {seed:2d}: killed after {result['kill_after']:.2f} s"
                           f"{'' if result['killed'] else ' (had finished)'}; answers {shown}; "
                           f"lost {result['lost']}, sent twice {result['sent_twice']}")
                out.append(result)
        finally:
            simulator.close()
    return out


def calibrate(n: int) -> float:
    """Seconds an undisturbed send of ``n`` messages takes under the faults."""
    from smskit.testing.servers import serve_in_thread
    from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

    simulator = KolmeyaSimulator(SimulatorConfig(token=common.SIM_TOKEN, seed=999, **FAULTS))
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(simulator.app) as base:
        try:
            popen = _start_worker({"db": str(Path(tmp) / "calibrate.db"), "sim": base, "n": n})
            started = _wait_ready(popen)
            _finish(popen, timeout=120.0)
            return time.monotonic() - started
        finally:
            simulator.close()


def run(quick: bool = False) -> List[Figure]:
    """Every trial; the summed figures."""
    trials, n = (QUICK_TRIALS, QUICK_N) if quick else (FULL_TRIALS, FULL_N)
    kill_within = 0.9 * calibrate(n)
    common.log(f"faults: an undisturbed send of {n:,} takes {kill_within:.1f} s; {trials} trials "
               f"of {n:,} messages, {LANES} at a time ...")
    lanes: List[Tuple[int, List[int]]] = [(k, list(range(k, trials, LANES))) for k in range(LANES)]
    with concurrent.futures.ThreadPoolExecutor(LANES) as pool:
        futures = [pool.submit(_lane, k, seeds, n, kill_within) for k, seeds in lanes]
        results = [r for f in futures for r in f.result()]
    lost = sum(r["lost"] for r in results)
    twice = sum(r["sent_twice"] for r in results)
    killed = sum(1 for r in results if r["killed"])
    answers: Dict[str, int] = {}
    for result in results:
        for key, count in result["answers"].items():
            answers[key] = answers.get(key, 0) + count
    shown = ", ".join(f"{count} {key}" for key, count in sorted(answers.items()))
    note = (f"{len(results)} trials x {n:,} messages, {killed} killed mid-send; "
            f"gateway answers: {shown}")
    return [
        Figure("faults_lost", lost, "messages", goal="0", met=lost == 0, note=note),
        Figure("faults_sent_twice", twice, "messages", goal="0", met=twice == 0, note=note),
    ]


if __name__ == "__main__":
    common.child_main({"worker": worker_child})
