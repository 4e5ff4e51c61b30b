"""A worker killed with SIGKILL mid bulk send to a faulty gateway loses nothing and sends
nothing twice once it is restarted (a reduced ``faults`` benchmark: a few trials).

Each trial: a fresh SQLite store; the Kolmeya simulator (uvicorn on 127.0.0.1, in this process)
answers some requests 429, some 500, and holds some accepted sends past the client's read
timeout. A real worker process runs the bulk send (``send_many`` with an idempotency prefix,
then the worker loop until everything is settled); it is killed at a random moment of the
send and started again with the same command. Then every message of the input must be sent and
accepted by the gateway exactly once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from smskit.models import State
from smskit.store.sql import SqlStore
from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

TOKEN = "faults-token"
READY = "FAULT-WORKER-SENDING"
N = 120
FAULTS: Dict[str, Any] = {
    "fail_429_rate": 0.15, "retry_after": 0, "fail_500_rate": 0.10,
    "timeout_after_accept_rate": 0.10, "hang_seconds": 1.5,
    # Each answer takes a little while, so that the send is still going when the kill comes.
    "slow_seconds": 0.04,
}

# The worker process: the bulk send, then the worker loop until nothing is left in flight.
WORKER = r"""
import datetime as dt, json, sys, threading
from smskit.config import Settings
from smskit.kit import SmsKit
from smskit.models import State
from smskit.store.sql import SqlStore
from smskit.worker import Worker

args = json.loads(sys.argv[1])
settings = Settings.load(environ={}, provider="kolmeya", kolmeya_base_url=args["api"],
                         kolmeya_token=args["token"], kolmeya_timeout="0.5",
                         kolmeya_connect_timeout="1", kolmeya_max_retry_wait="2")
store = SqlStore("sqlite:///" + args["db"])
kit = SmsKit(settings, store=store)
kit.provider().max_batch = 20  # many small requests, so that the faults meet some of them
rows = ({"phone": phone, "nome": "Conceição"} for phone in args["phones"])
print(args["ready"], flush=True)
kit.send_many(rows, "Olá {{ nome }}, sua fatura vence amanhã.", idempotency_prefix="faults")
stop = threading.Event()

def settled():
    # Every message sent, or held: a batch the gateway says it never received, while no
    # send ever succeeded to prove that lookup, waits for a person (never sent twice).
    held = sum(len(b.message_ids) for b in kit.held() if b.held)
    outgoing = store.count_by_state("kolmeya").get(("kolmeya", State.OUTGOING), 0)
    return (outgoing == held and not store.batches(status="claimed")
            and all(b.held for b in kit.held()))

def watch():
    while not stop.is_set():
        if settled():
            stop.set()
        stop.wait(0.05)

threading.Thread(target=watch, daemon=True).start()
Worker(kit, interval=0.05, stale_after=dt.timedelta(seconds=0.5), poll_replies=False).run(
    stop_event=stop)
kit.close()
"""


class Answers:
    """ASGI wrapper counting the simulator's answers by status (``held`` when held > 0.5 s)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Dict[str, int] = {}

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        started = time.monotonic()

        async def counting(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                key = "held" if time.monotonic() - started > 0.5 else str(message["status"])
                self.counts[key] = self.counts.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, counting if scope["type"] == "http" else send)


@pytest.fixture(scope="module")
def gateway() -> Iterator[Tuple[KolmeyaSimulator, Answers, str]]:
    """A faulty simulator under uvicorn, with its answers counted."""
    simulator = KolmeyaSimulator(SimulatorConfig(token=TOKEN, seed=7, **FAULTS))
    answers = Answers(simulator.app)
    with serve_in_thread(answers) as base:
        try:
            yield simulator, answers, f"{base}/api/v1"
        finally:
            simulator.close()  # lets a held answer go at once


def phones(trial: int) -> List[str]:
    return [f"+55{11 + trial}9{70_000_000 + i}" for i in range(N)]


def start_worker(args: Dict[str, Any]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    process = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(READY):
            return process
    _, err = process.communicate()
    raise AssertionError(f"the worker exited ({process.returncode}) before sending:\n{err}")


#: (trial, extra simulator settings): two trials of mixed faults, then one where every send
#: is accepted but answered after the client gave up (each batch must be settled by
#: reconciliation, never by sending again; a batch the kill stopped before its request left
#: is held, since no send ever succeeds to prove that Kolmeya's "not found" can be trusted).
TRIALS = [(0, {}), (1, {}), (2, {"timeout_after_accept_rate": 1.0})]


@pytest.mark.parametrize(("trial", "extra"), TRIALS)
def test_kill_9_mid_bulk_send_then_restart_loses_nothing_and_sends_once(
        gateway: Tuple[KolmeyaSimulator, Answers, str], tmp_path: Path, trial: int,
        extra: Dict[str, Any]) -> None:
    simulator, answers, api = gateway
    simulator.reset()
    simulator.configure(seed=100 + trial, **{**FAULTS, **extra})
    answers.counts.clear()
    numbers = phones(trial)
    args = {"api": api, "token": TOKEN, "db": str(tmp_path / "smskit.db"), "phones": numbers,
            "ready": READY}

    first = start_worker(args)
    time.sleep(random.Random(trial).uniform(0.05, 0.25))
    assert first.poll() is None, "the send finished before the kill; make it longer"
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL

    second = start_worker(args)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err

    store = SqlStore(f"sqlite:///{tmp_path / 'smskit.db'}")
    try:
        stored = {m.idempotency_key: m for m in store.list_messages(limit=10 * N)}
    finally:
        store.close()
    accepted = simulator.accepted_references()
    lost, twice, held = [], [], []
    for phone in numbers:
        message = stored.get(f"faults:{phone}")
        if message is not None and message.state is State.OUTGOING and message.batch_id \
                and accepted[message.id] == 0:
            held.append(phone)  # the gateway never got it; nothing proves it, so it waits
        elif message is None or message.state is not State.SENT or accepted[message.id] == 0:
            lost.append((phone, message.state.value if message else "never stored"))
        elif accepted[message.id] > 1:
            twice.append((phone, accepted[message.id]))
    assert lost == [], f"{len(lost)} message(s) lost; answers {answers.counts}"
    assert twice == [], f"{len(twice)} message(s) accepted more than once"
    assert len(stored) == N  # a re-run of the bulk send stored nobody twice
    assert sum(accepted.values()) == N - len(held)
    if extra:
        assert answers.counts.get("held", 0) >= 1, answers.counts
    else:  # some sends succeed: they prove the lookup, and every message goes out
        assert held == []
