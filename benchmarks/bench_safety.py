"""``safety``: never twice, never stuck, when the gateway's lookup or its callbacks fail.

Three fault runs, each in a child process holding the Kolmeya simulator and (for the last two)
smskit's reference webhook server, both under uvicorn on 127.0.0.1, a SQLite store and a
worker whose clock is moved by hand:

* **lookup**, once per way the simulator answers ``sms/status/request`` by ``reference``
  (``404`` or ``422`` for every request, or the ``documented`` shape): after one ordinary send
  (the witness), each of N messages is sent on its own while half the sends are accepted and
  answered 500, and a third fail with 500 before Kolmeya takes them; then the worker runs 5
  cycles, 2 minutes apart. Figures: messages Kolmeya accepted twice (goal 0 in every case), and
  for the documented shape the messages still held (goal 0: a proven lookup settles all).
* **statuses**: N messages, each status callback posted on its own (the flat shape) and 30% of
  them dropped; every message reaches its final state at Kolmeya, then the worker's status
  polling runs (``SMSKIT_STATUS_POLL_AFTER`` later). Figure: messages not final after two
  polling cycles (passes over the waiting messages; goal 0).
* **replies**: N replies, 30% of their callbacks dropped; then one worker cycle polls the
  replies. Figure: replies missing after one polling cycle (goal 0), and none stored twice.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import Figure

FULL = {"lookup": 200, "statuses": 5_000, "replies": 1_000}
QUICK = {"lookup": 40, "statuses": 1_000, "replies": 200}
LOOKUPS = ("404", "422", "documented")
DROP = 0.3


class _Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


def _kit(sim: Any, base: str, db: str, clock: _Clock, **values: str) -> Any:
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.store.sql import SqlStore

    settings = Settings.load(environ={}, **common.kit_settings(base, **values))
    return SmsKit(settings, store=SqlStore(f"sqlite:///{db}"), clock=clock)


def lookup_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Lost answers, then worker cycles, with the lookup answering ``args["mode"]``."""
    from smskit.models import State
    from smskit.testing.servers import serve_in_thread
    from smskit.worker import Worker
    from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

    sim = KolmeyaSimulator(SimulatorConfig(token=common.SIM_TOKEN, seed=7))
    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(sim.app) as base:
        kit = _kit(sim, base, str(Path(tmp) / "lookup.db"), clock)
        witness = kit.send(common.e164_for(10_000), "Primeira mensagem")
        sim.configure(error_after_accept_rate=0.5, fail_500_rate=0.3,
                      fault_endpoints=["sms/store"], reference_lookup=args["mode"])
        ids = [kit.send(common.e164_for(i), f"Mensagem {i}").message_id
               for i in range(int(args["n"]))]
        during = sim.accepted_references()
        answered = sum(1 for m in kit.store.get_many(ids) if m.state is State.SENT)
        lost = sum(1 for i in ids if during[i]) - answered
        sim.configure(error_after_accept_rate=0.0, fail_500_rate=0.0)
        worker = Worker(kit, poll_replies=False)
        for _ in range(5):
            clock.now += dt.timedelta(minutes=2)
            worker.run_once()
        accepted = sim.accepted_references()
        states = [m.state for m in kit.store.get_many(ids)]
        held = sum(len(b.message_ids) for b in kit.held())
        kit.close()
        sim.close()
    return {"mode": args["mode"], "n": len(ids), "witness": witness.state.value,
            "answered": answered, "answer_lost": lost,
            "never_reached": len(ids) - answered - lost,
            "sent_twice": sum(1 for i in ids if accepted[i] > 1),
            "never_sent": sum(1 for i in ids if accepted[i] == 0),
            "sent": sum(1 for s in states if s is State.SENT), "held": held}


def _hooked(tmp: str, clock: _Clock) -> Any:
    """The simulator, and a kit whose callbacks reach a reference webhook server."""
    import contextlib

    from smskit.server.app import create_app
    from smskit.testing.servers import serve_in_thread
    from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

    class Late:
        app: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            await self.app(scope, receive, send)

    @contextlib.contextmanager
    def running() -> Any:
        sim = KolmeyaSimulator(SimulatorConfig(token=common.SIM_TOKEN, seed=11,
                                               callback_shape="flat", callback_timeout=30))
        late = Late()
        with serve_in_thread(sim.app) as base, serve_in_thread(late) as server:
            kit = _kit(sim, base, str(Path(tmp) / "safety.db"), clock, public_url=server,
                       webhook_secret="bench-secret")
            late.app = create_app(kit)
            try:
                yield sim, kit
            finally:
                kit.close()
                sim.close()
    return running()


def statuses_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Statuses whose callbacks were dropped, repaired by status polling."""
    from smskit.models import Direction, State
    from smskit.worker import Worker

    clock = _Clock()
    final = {3: State.DELIVERED, 4: State.ERROR, 5: State.REJECTED, 6: State.EXPIRED}
    with tempfile.TemporaryDirectory() as tmp, _hooked(tmp, clock) as (sim, kit):
        sim.configure(callback_drop_rate=DROP)
        n = int(args["n"])
        summary = kit.send_many(common.rows(n), common.TEMPLATE)
        sim.advance()
        messages = [m for m in kit.store.list_messages(limit=10 * n)
                    if m.direction is Direction.OUTBOUND]
        stuck = sum(1 for m in messages if m.state is State.SENT)
        worker = Worker(kit, poll_replies=False)
        clock.now += dt.timedelta(seconds=901)
        passes, cycles, seconds = 0, 0, 0.0
        while passes < 2 and kit.store.awaiting_status("kolmeya", clock.now, limit=1):
            started = time.monotonic()
            report = worker.run_once().statuses.get("kolmeya")
            seconds += time.monotonic() - started
            cycles += 1
            if report is not None and report.done:
                passes += 1
                clock.now += dt.timedelta(seconds=301)
        by_reference = {m.reference: m.status_code for m in sim.messages.values()}
        after = kit.store.list_messages(limit=10 * n)
        nonfinal = sum(1 for m in after
                       if m.direction is Direction.OUTBOUND and not m.state.is_final)
        wrong = sum(1 for m in after if m.direction is Direction.OUTBOUND
                    and m.state.is_final and final.get(by_reference.get(m.id, 0)) is not m.state)
        dropped = sim.stats()["callbacks"]["dropped"]
    return {"n": n, "sent": summary.sent, "dropped_callbacks": dropped,
            "stuck_before": stuck, "passes": passes, "cycles": cycles,
            "nonfinal_after": nonfinal, "wrong_state": wrong, "poll_seconds": seconds}


def replies_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """Replies whose callbacks were dropped, brought in by one reply poll."""
    from smskit.models import Direction
    from smskit.worker import Worker

    clock = _Clock()
    with tempfile.TemporaryDirectory() as tmp, _hooked(tmp, clock) as (sim, kit):
        n = int(args["n"])
        kit.send_many(common.rows(n), "Responda SIM para confirmar.")
        sim.configure(callback_drop_rate=DROP)
        for i in range(n):
            sim.add_reply(common.e164_for(i)[3:], f"SIM {i}")
        sim.deliver_callbacks()

        def inbound() -> List[Any]:
            return [m for m in kit.store.list_messages(limit=10 * n)
                    if m.direction is Direction.INBOUND]

        before = len(inbound())
        started = time.monotonic()
        report = Worker(kit).run_once()
        seconds = time.monotonic() - started
        stored = inbound()
        bodies = {m.body for m in stored}
    return {"n": n, "missing_before": n - before,
            "missing_after": sum(1 for i in range(n) if f"SIM {i}" not in bodies),
            "stored_twice": len(stored) - len(bodies), "polled": report.replies.get("kolmeya"),
            "poll_seconds": seconds}


def run(quick: bool = False) -> List[Figure]:
    """The three fault runs; their figures."""
    sizes = QUICK if quick else FULL
    figures: List[Figure] = []
    for mode in LOOKUPS:
        found = common.run_child("bench_safety.py", "lookup", {"mode": mode,
                                                               "n": sizes["lookup"]})
        common.log(f"safety: lookup {mode}: {found}")
        note = (f"{found['n']} sends: {found['answered']} answered, {found['answer_lost']} "
                f"accepted with the answer lost, {found['never_reached']} never reached "
                f"Kolmeya; after 5 worker cycles {found['sent']} sent, {found['held']} held")
        figures.append(Figure(f"lookup_{mode}_sent_twice", found["sent_twice"], "messages",
                              goal="0", met=found["sent_twice"] == 0, note=note))
        if mode == "documented":
            figures.append(Figure("lookup_documented_held", found["held"], "messages",
                                  goal="0", met=found["held"] == 0, note=note))
    found = common.run_child("bench_safety.py", "statuses", {"n": sizes["statuses"]},
                             timeout=1800)
    common.log(f"safety: statuses: {found}")
    figures.append(Figure(
        "status_poll_nonfinal_after_2_cycles", found["nonfinal_after"], "messages", goal="0",
        met=found["nonfinal_after"] == 0 and found["wrong_state"] == 0,
        note=(f"{found['n']:,} messages, {found['dropped_callbacks']} callbacks dropped, "
              f"{found['stuck_before']} left 'sent'; {found['passes']} pass(es) in "
              f"{found['cycles']} worker cycle(s), {found['poll_seconds']:.1f} s; "
              f"{found['wrong_state']} in a state other than Kolmeya's")))
    found = common.run_child("bench_safety.py", "replies", {"n": sizes["replies"]},
                             timeout=1800)
    common.log(f"safety: replies: {found}")
    figures.append(Figure(
        "reply_poll_missing_after_1_cycle", found["missing_after"], "replies", goal="0",
        met=found["missing_after"] == 0 and found["stored_twice"] == 0,
        note=(f"{found['n']:,} replies, {found['missing_before']} callbacks dropped; one poll "
              f"brought {found['polled']} in ({found['poll_seconds']:.1f} s), "
              f"{found['stored_twice']} stored twice")))
    return figures


if __name__ == "__main__":
    common.child_main({"lookup": lookup_child, "statuses": statuses_child,
                       "replies": replies_child})
