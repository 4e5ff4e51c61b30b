"""The simulator base a third provider reuses (smskit.testing.sim): the worked example of
docs/plugins.md, run as written, behaves as the page says."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from docs_blocks import blocks
from smskit.errors import ConfigurationError
from smskit.testing.servers import serve_in_thread
from smskit.testing.sim import Chance

PAGE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def example() -> Dict[str, Any]:
    """The namespace of the page's ``check sim-base`` block."""
    (block,) = [b.text for b in blocks(PAGE) if b.tag == "check sim-base"]
    namespace: Dict[str, Any] = {"__name__": "acme_sim_example"}
    exec(compile(block, str(PAGE), "exec"), namespace)  # our own page, run as written
    return namespace


class Receiver:
    """A webhook receiver on loopback: answers each POST with the next of ``statuses``."""

    def __init__(self) -> None:
        self.statuses: List[int] = []
        self.forms: List[Dict[str, str]] = []
        self.url = ""

    async def hook(self, request: Request) -> Response:
        self.forms.append(dict(parse_qsl((await request.body()).decode())))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    app = Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])])
    with serve_in_thread(app) as url:
        hooks.url = f"{url}/hook"
        yield hooks


def test_a_callback_is_retried_with_backoff_and_logged(example: Dict[str, Any],
                                                        receiver: Receiver) -> None:
    sim = example["AcmeSimulator"](clock=lambda: T0)
    try:
        receiver.statuses[:] = [500]
        message_id = sim.accept("+15550001111", "hi", receiver.url)
        assert sim.advance(T0) == 1  # delivered; the report is refused once
        assert sim.callbacks.pending() == 1
        assert sim.deliver_callbacks(T0 + dt.timedelta(seconds=0.4)) == 0  # backoff: 0.5 s
        assert sim.deliver_callbacks(T0 + dt.timedelta(seconds=0.5)) == 1
        first, second = sim.callbacks_sent
        assert (first["attempt"], first["status_code"], first["ok"]) == (1, 500, False)
        assert (second["attempt"], second["status_code"], second["ok"]) == (2, 200, True)
        assert second["form"] == {"message": message_id, "status": "delivered"}
        assert receiver.forms[-1] == {"message": message_id, "status": "delivered"}
        assert sim.stats()["callbacks"] == {"queued": 1, "sent": 1, "failed": 0, "dropped": 0,
                                            "duplicated": 0, "retried": 1, "attempts": 2,
                                            "pending": 0}
        sim.reset()
        assert sim.messages == {} and sim.callbacks_sent == []
    finally:
        sim.close()


def test_settings_are_validated_and_secrets_masked(example: Dict[str, Any]) -> None:
    sim = example["AcmeSimulator"](example["AcmeSimConfig"](token="s3cret"))
    try:
        with pytest.raises(ConfigurationError, match="unknown simulator setting"):
            sim.configure(nope=1)
        with pytest.raises(ConfigurationError, match="between 0 and 1"):
            sim.configure(undelivered_rate=2)
        with pytest.raises(ConfigurationError, match="expected a number"):
            sim.configure(delivery_delay="soon")
        assert sim.configure(delivery_delay="2").delivery_delay == 2.0
        shown = sim.config.as_json()
        assert shown["token"] == "********" and shown["delivery_delay"] == 2.0
    finally:
        sim.close()


def test_the_app_and_its_control_endpoints(example: Dict[str, Any], receiver: Receiver) -> None:
    sim = example["AcmeSimulator"](example["AcmeSimConfig"](token="t"))
    try:
        with serve_in_thread(sim.app) as url:
            api = httpx.Client(base_url=url)
            assert api.post("/messages", json={}).status_code == 401
            created = api.post("/messages", headers={"Authorization": "Bearer t"},
                               json={"to": "+15550002222", "text": "hi",
                                     "callback": receiver.url})
            assert created.status_code == 201
            assert api.post("/_sim/advance").json() == {"changed": 1}
            assert sim.messages[created.json()["id"]]["status"] == "delivered"
            assert api.get("/_sim/stats").json()["callbacks"]["sent"] == 1
            assert api.get("/_sim/config").json()["token"] == "********"
            refused = api.post("/_sim/config", json={"undelivered_rate": 7})
            assert refused.status_code == 422 and "undelivered_rate" in refused.json()["error"]
            assert api.post("/_sim/reset").json() == {"reset": True}
            assert api.get("/_sim/stats").json()["messages"] == 0
            assert api.get("/elsewhere").status_code == 404
    finally:
        sim.close()


def test_auto_progress_runs_a_named_thread_until_close(example: Dict[str, Any]) -> None:
    sim = example["AcmeSimulator"](example["AcmeSimConfig"](tick=0.01))
    try:
        assert "acme-sim" not in {t.name for t in threading.enumerate()}
        sim.configure(auto_progress=True)
        assert "acme-sim" in {t.name for t in threading.enumerate()}
        sim.accept("+15550003333", "hi", "http://127.0.0.1:9/nowhere")
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while sim.stats()["callbacks"]["attempts"] == 0 and dt.datetime.now() < deadline:
            threading.Event().wait(0.01)
        assert [m["status"] for m in sim.messages.values()] == ["delivered"]
        assert sim.callbacks_sent[0]["error"] == "ConnectError"
    finally:
        sim.close()
    assert "acme-sim" not in {t.name for t in threading.enumerate()}


def test_one_seed_gives_one_sequence_of_draws() -> None:
    def draws(chance: Chance) -> List[Any]:
        items = list(range(10))
        chance.shuffle(items)
        return [chance.roll(0.5) for _ in range(20)] + [chance.pick({"a": 1, "b": 2})] + items

    assert draws(Chance(7)) == draws(Chance(7))
    again = Chance(8)
    first = draws(again)
    again.reseed(8)
    assert draws(again) == first
    assert Chance(1).roll(0.0) is False
