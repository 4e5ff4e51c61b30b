"""``failover``: the primary gateway goes down for the middle third of a 10,000-message send.

A worker process sends 10,000 messages (``send_many``, an idempotency prefix, dispatching each
chunk of 250) with the route ``* => kolmeya, twilio`` and a SQLite store. The Kolmeya
simulator (the primary) and the Twilio simulator (the secondary, one request per message) run
under uvicorn in their own processes. The worker reaches Kolmeya through a TCP switch in this
process: when a third of the messages have been accepted (by either gateway) the switch stops
listening and cuts its open connections, as a gateway that dies does (a request in flight
then has an unknown outcome); when two thirds have been accepted it listens again. After the
send the worker runs its loop (reconcile, dispatch) until nothing is left in flight. Kolmeya's
client keeps its default retries (4 attempts, 0.5 / 1 / 2 s apart, when nothing was sent); the
circuit's cool-down is 5 s.

Figures: ``failover_lost``, messages that did not end accepted by a gateway;
``failover_sent_twice``, gateway acceptances beyond one per message (both gateways' counts,
and each gateway's own duplicates); ``failover_switch_s``, seconds from the moment the primary
went down to the first message accepted by the secondary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Set

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import httpx
from common import Figure

FULL_N, QUICK_N = 10_000, 1_500
COOLDOWN = 5.0
READY = "FAILOVER-WORKER-SENDING"
ACCEPTED = ("sent", "delivered", "error", "expired")
TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-twilio-token"
TWILIO_FROM = "+15005550006"


def chunk_for(n: int) -> int:
    """Recipients composed (and dispatched) at a time: fine enough that the primary goes down
    and comes back in the middle of the send, not between two chunks."""
    return max(100, n // 40)


# -- the worker (child process) -------------------------------------------------------------------
def worker_child(args: Dict[str, Any]) -> Mapping[str, Any]:
    """The bulk send, then the worker loop until nothing is in flight."""
    import datetime as dt

    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.models import State
    from smskit.plugins import Plugins
    from smskit.store.sql import SqlStore
    from smskit.worker import Worker
    from smskit_kolmeya import plugin as kolmeya_plugin
    from smskit_twilio import plugin as twilio_plugin

    settings = Settings.load(environ={}, **common.kit_settings(
        args["primary"], routes="* => kolmeya, twilio", circuit_cooldown=str(COOLDOWN),
        kolmeya_timeout="5", kolmeya_connect_timeout="1",
        twilio_base_url=args["secondary"], twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN, twilio_from=TWILIO_FROM,
        twilio_reconcile_grace="0"))
    plugins = Plugins(settings, entry_points=False)
    plugins.register(kolmeya_plugin, name="kolmeya")
    plugins.register(twilio_plugin, name="twilio")
    store = SqlStore(f"sqlite:///{args['db']}")
    kit = SmsKit(settings, store=store, plugins=plugins)
    secondary = kit.provider("twilio")
    first: List[float] = []
    send_batch = secondary.send_batch

    def timed(messages: Any, *, batch_id: str) -> Any:
        results = send_batch(messages, batch_id=batch_id)
        if not first and any(r.state is State.SENT for r in results):
            first.append(time.time())
        return results

    secondary.send_batch = timed  # type: ignore[method-assign]
    print(READY, flush=True)
    started = time.monotonic()
    kit.send_many(common.rows(int(args["n"])), common.TEMPLATE, idempotency_prefix="failover",
                  campaign_id="failover", chunk_size=chunk_for(int(args["n"])))
    sent_in = time.monotonic() - started
    worker = Worker(kit, interval=0.1, stale_after=dt.timedelta(seconds=30),
                    poll_replies=False)
    cycles = 0
    while True:
        worker.run_once()
        cycles += 1
        counts = store.count_by_state()
        if (not sum(n for (_, s), n in counts.items() if s is State.OUTGOING)
                and not store.batches(status="claimed")
                and not store.batches(status="ambiguous")):
            break
        time.sleep(0.2)
    by_state: Dict[str, int] = {}
    by_provider: Dict[str, int] = {}
    for (provider, state), count in store.count_by_state().items():
        by_state[state.value] = by_state.get(state.value, 0) + count
        by_provider[provider] = by_provider.get(provider, 0) + count
    moved = store.reroute_counts()
    kit.close()
    return {"first_secondary_at": first[0] if first else None, "by_state": by_state,
            "by_provider": by_provider, "moved": {f"{a}->{b}": n for (a, b), n in moved.items()},
            "send_seconds": sent_in, "cycles": cycles,
            "elapsed": time.monotonic() - started}


# -- the switch in front of the primary --------------------------------------------------------
class Switch:
    """A TCP relay to ``target`` on its own port, that can stop listening (and cut its open
    connections: connection refused / reset) and listen again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = common.free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Optional[asyncio.AbstractServer] = None
        self.writers: Set[asyncio.StreamWriter] = set()
        self.down_at: Optional[float] = None

    @property
    def url(self) -> str:
        """The primary's URL through the switch."""
        return f"http://127.0.0.1:{self.port}"

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port)
        self.writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer),
                                 self._pipe(upstream_reader, writer))
        finally:
            self.writers -= {writer, upstream_writer}

    async def _up(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                 reuse_address=True)

    async def _down(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            transport = writer.transport
            with contextlib.suppress(OSError, RuntimeError):
                transport.abort()  # a reset, not a polite close: the gateway died

    def up(self) -> None:
        """Listen (again)."""
        asyncio.run_coroutine_threadsafe(self._up(), self.loop).result(10)

    def down(self) -> None:
        """Stop listening and cut every open connection."""
        self.down_at = time.time()
        asyncio.run_coroutine_threadsafe(self._down(), self.loop).result(10)

    def close(self) -> None:
        """Stop the relay's loop."""
        with contextlib.suppress(Exception):
            self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextlib.contextmanager
def twilio_simulator() -> Iterator[common.Process]:
    """The Twilio simulator under uvicorn in its own process."""
    port = common.free_port()
    config = {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN,
              "numbers": [TWILIO_FROM], "seed": 3, "outcomes": {"delivered": 1.0}}
    code = ("import json, sys\n"
            "from smskit_twilio.testing.simulator import main\n"
            "main('127.0.0.1', int(sys.argv[1]), log_level='warning', "
            "**json.loads(sys.argv[2]))\n")
    with common.server_process([common.PYTHON, "-c", code, str(port), json.dumps(config)],
                               "/_sim/stats", port) as process:
        yield process


def _stats(url: str) -> Dict[str, Any]:
    stats: Dict[str, Any] = httpx.get(f"{url}/_sim/stats", timeout=5).json()
    return stats


def run(quick: bool = False) -> List[Figure]:
    """One send of ``n`` messages with the primary down for its middle third."""
    n = QUICK_N if quick else FULL_N
    common.log(f"failover: {n:,} messages, Kolmeya down for the middle third ...")
    with tempfile.TemporaryDirectory() as tmp, common.simulator(outcomes={"3": 1.0}) as primary, \
            twilio_simulator() as secondary:
        switch = Switch(int(primary.base_url.rsplit(":", 1)[1]))
        switch.up()
        args = {"db": str(Path(tmp) / "failover.db"), "primary": switch.url,
                "secondary": secondary.base_url, "n": n}
        out_path, err_path = Path(tmp) / "worker.out", Path(tmp) / "worker.err"
        with out_path.open("w") as out_file, err_path.open("w") as err_file:
            popen = subprocess.Popen(
                [common.PYTHON, str(Path(__file__).resolve()), "worker", json.dumps(args)],
                stdout=out_file, stderr=err_file, text=True, env=common.child_env())
        try:
            went_down = came_up = None
            while popen.poll() is None:
                accepted = (_stats(primary.base_url)["messages"]
                            + _stats(secondary.base_url)["messages"])
                if went_down is None and accepted >= n / 3:
                    switch.down()
                    went_down = time.time()
                    common.log(f"failover: primary down after {accepted:,} accepted")
                elif went_down is not None and came_up is None and accepted >= 2 * n / 3:
                    switch.up()
                    came_up = time.time()
                    common.log(f"failover: primary up again after {accepted:,} accepted")
                time.sleep(0.05)
        finally:
            if popen.poll() is None:
                popen.kill()
            switch.close()
        out, err = out_path.read_text(), err_path.read_text()
        if popen.returncode != 0:
            raise RuntimeError(f"the failover worker failed ({popen.returncode}):\n{err[-4000:]}")
        answer = common.read_answer(out)
        if answer is None:
            raise RuntimeError(f"the failover worker gave no answer:\n{err[-4000:]}")
        kolmeya, twilio = _stats(primary.base_url), _stats(secondary.base_url)
    accepted_ok = sum(answer["by_state"].get(s, 0) for s in ACCEPTED)
    lost = n - accepted_ok
    twice = (kolmeya["messages"] + twilio["messages"] - accepted_ok
             + kolmeya["accepted_twice"] + twilio["sent_twice"])
    first = answer["first_secondary_at"]
    switch_s = (first - went_down) if first is not None and went_down is not None else \
        float("nan")
    moved = ", ".join(f"{k}: {v:,}" for k, v in answer["moved"].items()) or "none"
    note = (f"{n:,} messages; accepted by kolmeya {kolmeya['messages']:,}, twilio "
            f"{twilio['messages']:,}; moved {moved}; send {answer['send_seconds']:.1f} s, "
            f"all settled after {answer['elapsed']:.1f} s ({answer['cycles']} worker cycles)")
    common.log(f"failover: {note}")
    return [
        Figure("failover_lost", lost, "messages", goal="0", met=lost == 0, note=note),
        Figure("failover_sent_twice", twice, "messages", goal="0", met=twice == 0),
        Figure("failover_switch_s", switch_s, "s",
               note="primary down -> first message accepted by the secondary (includes the "
                    "client's retries of the refused connection)"),
    ]


if __name__ == "__main__":
    common.child_main({"worker": worker_child})

