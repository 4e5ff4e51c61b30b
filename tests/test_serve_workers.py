"""``smskit serve --workers 2`` as a user runs it: a real command on a loopback port, over a
SQLite file and (SMSKIT_TEST_POSTGRES_URL) PostgreSQL, fed Kolmeya status callbacks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import httpx
import pytest

from smskit.models import Message, State, utcnow
from smskit.store.sql import SqlStore
from smskit.store.sql.tables import VERSION_TABLE

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")
_NO_PG = "set SMSKIT_TEST_POSTGRES_URL=postgresql://user@127.0.0.1:5432/db to run on PostgreSQL"
SECRET = "workers-s3cr3t"
COUNT = 120
SRC = str(Path(__file__).resolve().parents[1] / "src")


def message_id(i: int) -> str:
    return f"WORKERS{i:019d}"


def callback(i: int) -> Dict[str, Any]:
    """Kolmeya's status callback for the ``i``-th message: delivered."""
    return {"id": f"req-{i:06d}", "reference": f"batch-{i:06d}",
            "messages": [{"id": f"kol-{i:08d}", "reference": message_id(i), "status_code": 3,
                          "status": "entregue"}]}


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.skipif(not PG_URL, reason=_NO_PG)),
])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tuple[str, SqlStore]]:
    """A store URL seeded with COUNT sent Kolmeya messages, and a store of its own on it."""
    url = PG_URL if request.param == "postgresql" else f"sqlite:///{tmp_path / 'smskit.db'}"
    assert url is not None
    store = SqlStore(url)
    if request.param == "postgresql":
        with store._engine.begin() as conn:
            tables = set(store._engine.dialect.get_table_names(conn)) - {VERSION_TABLE}
            conn.exec_driver_sql(f"TRUNCATE {', '.join(sorted(tables))} RESTART IDENTITY CASCADE")
    now = utcnow()
    store.add_messages([
        Message(id=message_id(i), phone=f"+55119{60000000 + i}", body="Sua fatura vence hoje.",
                state=State.SENT, provider="kolmeya", provider_message_id=f"kol-{i:08d}",
                provider_request_id=f"req-{i:06d}", created_at=now, sent_at=now, segments=1)
        for i in range(COUNT)])
    yield url, store
    store.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(url: str, tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    env.update({"PYTHONPATH": SRC, "SMSKIT_DATABASE_URL": url, "SMSKIT_WEBHOOK_SECRET": SECRET,
                "SMSKIT_PROVIDER": "kolmeya", "SMSKIT_KOLMEYA_TOKEN": "kolmeya-token",
                "SMSKIT_KOLMEYA_BASE_URL": "http://127.0.0.1:9/api/v1"})
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - the child writes it until it ends
    return subprocess.Popen(
        [sys.executable, "-m", "smskit", "serve", "--port", str(port), "--workers", "2",
         "--log-level", "info"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=log, text=True)


def _wait_up(proc: subprocess.Popen[str], base: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    started: Set[str] = set()
    while len(started) < 2:  # both workers up, not only the first to bind
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        started = set(re.findall(r"\[(\d+)\] Application startup complete", log.read_text()))
        time.sleep(0.1)
    assert httpx.get(f"{base}/healthz").status_code == 200


def _scrape(base: str) -> Dict[str, float]:
    """The Kolmeya status requests a ``/metrics`` scrape counts, by outcome."""
    response = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=30)
    assert response.status_code == 200, response.text
    counted: Dict[str, float] = {}
    for labels, value in re.findall(r"^smskit_webhook_requests_total\{(.*)\} (\S+)$",
                                    response.text, re.M):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if label["provider"] == "kolmeya" and label["kind"] == "status":
            counted[label["outcome"]] = counted.get(label["outcome"], 0) + float(value)
    return counted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_apply_every_callback_once_and_stop_on_sigterm(
        database: Tuple[str, SqlStore], tmp_path: Path) -> None:
    url, store = database
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _start(url, tmp_path, port)
    try:
        _wait_up(proc, base, log)

        def post(i: int) -> Tuple[int, Dict[str, Any], State]:
            # a connection per request, as callbacks from a gateway come: spread over workers
            response = httpx.post(f"{base}/webhooks/kolmeya/status?token={SECRET}",
                                  content=json.dumps(callback(i)),
                                  headers={"Content-Type": "application/json",
                                           "Connection": "close"}, timeout=30)
            stored = store.get(message_id(i))  # read right after the answer: committed?
            assert stored is not None
            return response.status_code, response.json(), stored.state

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(post, range(COUNT)))
            again = list(pool.map(post, reversed(range(COUNT))))
            # whichever worker answers a scrape, it counts every worker's requests
            scrapes = list(pool.map(lambda _: _scrape(base), range(8)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert {status for status, _, _ in first + again} == {200}
    # every 200 came after its event was committed: the store said so at once
    assert {state for _, _, state in first} == {State.DELIVERED}
    assert sum(body["applied"] for _, body, _ in first) == COUNT
    assert sum(body["applied"] for _, body, _ in again) == 0
    assert sum(body["ignored"] for _, body, _ in again) == COUNT
    for i in range(COUNT):
        applied = [e for e in store.history(message_id(i))
                   if e.applied and e.new_state == State.DELIVERED.value]
        assert len(applied) == 1, (i, store.history(message_id(i)))
    served = re.findall(r'\[(\d+)\] [\d.:]+ - "POST /webhooks/kolmeya/status\?token=\*+" 200',
                        text)
    assert len(served) == 2 * COUNT
    workers: List[int] = [int(p) for p in
                          set(re.findall(r"\[(\d+)\] Started server process", text))]
    assert len(workers) == 2 and set(map(int, served)) == set(workers), text
    scraped = re.findall(r'\[(\d+)\] [\d.:]+ - "GET /metrics" 200', text)
    assert set(map(int, scraped)) == set(workers), "both workers answered scrapes"
    assert scrapes == [{"ok": 2 * COUNT}] * len(scrapes)
    assert SECRET not in text
    # on SQLite the command says what several writers cost there
    assert ("write one at a time" in text) == url.startswith("sqlite")
    assert not any(_alive(pid) for pid in workers)  # SIGTERM to the command stopped them all
