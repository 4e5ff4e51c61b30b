"""The Kolmeya simulator, served by a real uvicorn on 127.0.0.1 and spoken to with raw httpx."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smskit.errors import ConfigurationError, NotFoundError
from smskit.testing.servers import serve_in_thread
from smskit.timeutil import zone
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig, create_app

TOKEN = "test-token-123"
PHONE = 48991234567
NOT_FOUND = {"errors": ["Not found."]}


class Receiver:
    """A webhook receiver: records every POST (query params, JSON) and answers from a script."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Dict[str, str], Any]] = []
        self.answers: List[int] = []
        self.lock = threading.Lock()

        async def hook(request: Request) -> Response:
            body = await request.json()
            with self.lock:
                self.calls.append((dict(request.query_params), body))
                status = self.answers.pop(0) if self.answers else 200
            return Response(status_code=status)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    @property
    def bodies(self) -> List[Any]:
        with self.lock:
            return [body for _, body in self.calls]


@pytest.fixture
def sim() -> Iterator[KolmeyaSimulator]:
    simulator = KolmeyaSimulator(SimulatorConfig(token=TOKEN, seed=7))
    yield simulator
    simulator.close()


@pytest.fixture
def server(sim: KolmeyaSimulator) -> Iterator[str]:
    with serve_in_thread(sim.app) as base:
        yield base


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server}/api/v1",
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Tuple[Receiver, str]]:
    rec = Receiver()
    with serve_in_thread(rec.app) as base:
        yield rec, f"{base}/hook?token=s3cr3t"


def send(client: httpx.Client, *phones: Any, text: str = "Olá, tudo bem?", **top: Any
         ) -> httpx.Response:
    messages = [{"phone": p, "message": text, "reference": f"m{i}"} for i, p in enumerate(phones)]
    return client.post("/sms/store", json={"messages": messages, **top})


def later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


# -- routing, auth, validation -------------------------------------------------------------


def test_auth_missing_or_wrong_token_is_401_and_sends_nothing(server: str,
                                                               sim: KolmeyaSimulator) -> None:
    body = {"messages": [{"phone": PHONE, "message": "x"}]}
    no_auth = httpx.post(f"{server}/api/v1/sms/store", json=body)
    wrong = httpx.post(f"{server}/api/v1/sms/store", json=body,
                       headers={"Authorization": "Bearer nope"})
    assert (no_auth.status_code, no_auth.json()) == (401, {"errors": ["Unauthenticated."]})
    assert (wrong.status_code, wrong.json()) == (401, {"errors": ["Unauthenticated."]})
    assert sim.requests == {}


def test_get_and_unknown_paths_are_404_not_found(client: httpx.Client, server: str) -> None:
    assert client.get("/sms/balance").status_code == 404
    assert client.get("/sms/balance").json() == NOT_FOUND
    assert client.post("/sms/nothing").json() == NOT_FOUND
    assert httpx.post(f"{server}/whatever").status_code == 404
    assert client.post("/sms/balance").status_code == 200


def test_validation_errors_are_422_with_errors_list(client: httpx.Client,
                                                    sim: KolmeyaSimulator) -> None:
    missing_phone = client.post("/sms/store", json={"messages": [{"to": PHONE, "message": "x"}]})
    assert missing_phone.status_code == 422
    assert missing_phone.json() == {"errors": ['Undefined array key "phone"']}
    bad_json = client.post("/sms/store", content=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422
    assert bad_json.json()["errors"]
    no_messages = client.post("/sms/store", json={"messages": []})
    assert no_messages.json() == {"errors": ["The messages field is required."]}
    hook = client.post("/sms/store", json={"messages": [{"phone": PHONE, "message": "x"}],
                                           "webhook_url": "not a url"})
    assert hook.status_code == 422
    assert sim.requests == {}
    assert sim.balance == Decimal("1000")


def test_1000_messages_accepted_1001_rejected_whole(client: httpx.Client,
                                                    sim: KolmeyaSimulator) -> None:
    phones = [48_990_000_000 + i for i in range(1001)]
    too_many = send(client, *phones)
    assert too_many.status_code == 422
    assert "1000" in too_many.json()["errors"][0]
    assert sim.messages == {}
    ok = send(client, *phones[:1000])
    assert ok.status_code == 200
    assert len(ok.json()["valids"]) == 1000
    assert len(sim.messages) == 1000


def test_phones_echoed_national_without_55(client: httpx.Client) -> None:
    body = send(client, "5548991234567", 11987654321, "21987654321", reference="batch-1").json()
    assert body["reference"] == "batch-1"
    assert [v["phone"] for v in body["valids"]] == [48991234567, 11987654321, 21987654321]
    assert [v["reference"] for v in body["valids"]] == ["m0", "m1", "m2"]
    assert all(len(v["id"]) == 36 for v in body["valids"])


def test_rejection_arrays(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    sim.configure(blacklist={"11911111111"}, not_disturb={5521922222222},
                  invalid={"31933333333"})
    body = send(client, PHONE, "5548991234567", 11911111111, 21922222222, 31933333333,
                "4899123", "48-99123-4567").json()
    assert [v["phone"] for v in body["valids"]] == [PHONE]
    assert [d["phone"] for d in body["duplicates"]] == [PHONE]
    assert body["blacklist"] == [{"phone": 11911111111}]
    assert body["not_disturb"] == [{"phone": 21922222222}]
    assert [i["phone"] for i in body["invalids"]] == [31933333333, 4899123, "48-99123-4567"]
    assert all(i["error"] for i in body["invalids"])
    assert len(sim.messages) == 1


def test_store_token_rules(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    sim.configure(not_disturb={PHONE})
    two = client.post("/sms/store-token", json={"messages": [
        {"phone": PHONE, "message": "a"}, {"phone": 11987654321, "message": "b"}]})
    assert two.status_code == 422
    for text in ("Acesse https://x.com/a", "Ligue 0800 123 4567"):
        bad = client.post("/sms/store-token", json={"messages": [{"phone": PHONE,
                                                                  "message": text}]})
        assert bad.status_code == 422
    assert sim.requests == {}
    ok = client.post("/sms/store-token", json={"messages": [{"phone": PHONE,
                                                             "message": "Seu código: 1234"}]})
    assert ok.json()["valids"][0]["phone"] == PHONE  # not_disturb is skipped for tokens
    assert send(client, PHONE).json()["not_disturb"] == [{"phone": PHONE}]


# -- statuses ------------------------------------------------------------------------------


def test_status_progression_by_advance(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    sim.configure(delivery_delay=60, forced_outcomes={PHONE: 3, 11987654321: 5})
    body = send(client, PHONE, 11987654321, reference="b-1").json()
    ids = [v["id"] for v in body["valids"]]
    first = client.post("/sms/status/request", json={"id": body["id"]}).json()
    assert first["status"] == "Válido"
    assert first["status_code"] == 2
    assert [m["status_code"] for m in first["messages"]] == [1, 1]
    assert sim.advance() == 2
    by_ref = client.post("/sms/status/request", json={"reference": "b-1"}).json()
    assert by_ref["id"] == body["id"]
    assert [(m["status"], m["status_code"]) for m in by_ref["messages"]] == [("enviado", 2)] * 2
    assert sim.advance(later(61)) == 2
    assert client.post("/sms/status/message", json={"id": ids[0]}).json() == {
        "id": ids[0], "reference": "m0", "status": "entregue", "status_code": 3}
    assert client.post("/sms/status/message", json={"id": ids[1]}).json()["status_code"] == 5
    assert [code for code, _ in sim.messages[ids[0]].history] == [1, 2, 3]
    assert sim.advance(later(120)) == 0
    again = send(client, PHONE).json()["valids"][0]["id"]
    assert sim.advance() == 1
    sim.configure(delivery_delay=0)  # a shorter delay applies to messages already in flight
    assert sim.advance() == 1
    assert sim.messages[again].status_code == 3
    unknown = client.post("/sms/status/request", json={"id": "nope"})
    assert (unknown.status_code, unknown.json()) == (404, NOT_FOUND)


def test_outcomes_are_drawn_with_seed(sim: KolmeyaSimulator) -> None:
    def run() -> List[int]:
        sim.reset()
        items = [{"phone": 48_990_000_000 + i, "message": "x"} for i in range(200)]
        sim.accept("store", items)
        sim.advance()
        return [m.status_code for m in sim.messages.values()]

    sim.configure(outcomes={3: 0.5, 4: 0.5})
    first = run()
    assert first == run()
    assert set(first) == {3, 4}


# -- callbacks -----------------------------------------------------------------------------


def test_nested_callback_batches_request_and_keeps_token(
        client: httpx.Client, sim: KolmeyaSimulator, receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    body = send(client, PHONE, 11987654321, reference="b-9", webhook_url=url).json()
    sim.advance()
    assert len(rec.calls) == 1
    query, payload = rec.calls[0]
    assert query == {"token": "s3cr3t"}
    assert payload["id"] == body["id"]
    assert payload["reference"] == "b-9"
    assert [m["id"] for m in payload["messages"]] == [v["id"] for v in body["valids"]]
    assert all(m["status_code"] in (3, 4, 5, 6) and m["status"] for m in payload["messages"])
    assert sim.callbacks_sent[0]["ok"] is True


def test_flat_callbacks_on_all_statuses(client: httpx.Client, sim: KolmeyaSimulator,
                                        receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(callback_shape="flat", callbacks_on="all", forced_outcomes={PHONE: 3})
    msg_id = send(client, PHONE, webhook_url=url).json()["valids"][0]["id"]
    sim.advance()
    assert rec.bodies == [
        {"id": msg_id, "reference": "m0", "status": "enviado", "status_code": 2, "phone": PHONE},
        {"id": msg_id, "reference": "m0", "status": "entregue", "status_code": 3, "phone": PHONE},
    ]


def test_nested_all_statuses_never_repeats_a_message_in_one_callback(
        client: httpx.Client, sim: KolmeyaSimulator, receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(callbacks_on="all", forced_outcomes={PHONE: 4})
    send(client, PHONE, 11987654321, webhook_url=url)
    sim.configure(forced_outcomes={PHONE: 4, 11987654321: 6})
    sim.advance()
    assert [[m["status_code"] for m in b["messages"]] for b in rec.bodies] == [[2, 2], [4, 6]]
    assert [m["status"] for m in rec.bodies[1]["messages"]] == ["não entregue", "expirada"]


def test_callback_drop_duplicate_shuffle(client: httpx.Client, sim: KolmeyaSimulator,
                                         receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(callback_shape="flat", callback_drop_rate=1.0)
    send(client, PHONE, webhook_url=url)
    sim.advance()
    assert rec.calls == []
    assert sim.stats()["callbacks"]["dropped"] == 1

    sim.configure(callback_drop_rate=0.0, callback_duplicate_rate=1.0)
    msg_id = send(client, 11987654321, webhook_url=url).json()["valids"][0]["id"]
    sim.advance()
    assert [b["id"] for b in rec.bodies] == [msg_id, msg_id]
    assert sim.stats()["callbacks"]["duplicated"] == 1

    rec.calls.clear()
    sim.configure(callback_duplicate_rate=0.0, callback_shuffle=True)
    phones = [48_990_000_000 + i for i in range(12)]
    valids = send(client, *phones, webhook_url=url).json()["valids"]
    sim.advance()
    received = [b["id"] for b in rec.bodies]
    assert sorted(received) == sorted(v["id"] for v in valids)
    assert received != [v["id"] for v in valids]


def test_failed_callbacks_are_retried_then_given_up(
        client: httpx.Client, sim: KolmeyaSimulator, receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(callback_max_attempts=2, callback_backoff=5)
    rec.answers.extend([500])
    send(client, PHONE, webhook_url=url)
    sim.advance()
    assert sim.deliver_callbacks() == 0  # not due yet
    assert sim.deliver_callbacks(later(6)) == 1
    assert [(e["attempt"], e["status_code"]) for e in sim.callbacks_sent] == [(1, 500), (2, 200)]

    rec.answers.extend([503, 503])
    send(client, 11987654321, webhook_url=url)
    sim.advance()
    sim.deliver_callbacks(later(6))
    assert sim.stats()["callbacks"]["failed"] == 1
    assert sim.stats()["callbacks"]["pending"] == 0


def test_unreachable_webhook_counts_as_failure(client: httpx.Client,
                                               sim: KolmeyaSimulator) -> None:
    sim.configure(callback_max_attempts=1, callback_timeout=1)
    send(client, PHONE, webhook_url="http://127.0.0.1:9/hook")
    sim.advance()
    assert sim.callbacks_sent[0]["ok"] is False
    assert sim.callbacks_sent[0]["error"]
    assert sim.stats()["callbacks"]["failed"] == 1


def test_auto_progress_delivers_without_advance(
        client: httpx.Client, sim: KolmeyaSimulator, receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(auto_progress=True, tick=0.02)
    body = send(client, PHONE, webhook_url=url).json()
    deadline = time.monotonic() + 10
    while not rec.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec.bodies[0]["id"] == body["id"]
    sim.configure(auto_progress=False)


# -- replies -------------------------------------------------------------------------------


def test_reply_callback_and_replys_pagination(
        client: httpx.Client, sim: KolmeyaSimulator, receiver: Tuple[Receiver, str]) -> None:
    rec, url = receiver
    sim.configure(replies_per_page=2)
    valid = send(client, PHONE, webhook_url=url, reference="b").json()["valids"][0]
    reply = sim.add_reply(PHONE, "SIM")
    sim.deliver_callbacks()
    payload = rec.bodies[0]["reply"]
    assert payload["reply"] == "SIM"
    assert payload["message"]["id"] == valid["id"]
    assert payload["message"]["content"] == "Olá, tudo bem?"
    assert dt.datetime.strptime(payload["received_at"], "%d/%m/%Y %H:%M:%S")
    for i in range(4):
        sim.add_reply(valid["id"], f"r{i}")
    page1 = client.post("/sms/replys", json={}).json()
    assert (page1["total"], page1["per_page"], page1["last_page"]) == (5, 2, 3)
    assert [r["reply"] for r in page1["data"]] == ["SIM", "r0"]
    assert page1["data"][0] == reply
    assert page1["prev_page_url"] is None
    assert page1["next_page_url"].endswith("/api/v1/sms/replys?page=2")
    page3 = client.post("/sms/replys", json={"period": 168, "page": 3}).json()
    assert [r["reply"] for r in page3["data"]] == ["r3"]
    assert (page3["from"], page3["to"], page3["next_page_url"]) == (5, 5, None)
    assert client.post("/sms/replys", json={"period": 169}).status_code == 422
    with pytest.raises(NotFoundError):
        sim.add_reply(11900000000, "who?")


def test_replys_without_a_period_lists_the_last_168_hours(client: httpx.Client,
                                                          sim: KolmeyaSimulator) -> None:
    # the live test saw {} answer the last 168 h (the docs transcription says 24 by default)
    send(client, PHONE)
    now = sim.now()
    sim.add_reply(PHONE, "too old", received_at=now - dt.timedelta(hours=169))
    sim.add_reply(PHONE, "100 h old", received_at=now - dt.timedelta(hours=100))
    assert [r["reply"] for r in client.post("/sms/replys", json={}).json()["data"]] == [
        "100 h old"]
    assert client.post("/sms/replys", json={"period": 24}).json()["data"] == []


# -- money, reports, blacklist, jobs -------------------------------------------------------


def test_balance_decreases_per_segment(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    assert client.post("/sms/balance").json() == {"balance": "R$1.000,00"}
    send(client, PHONE, text="a" * 160)  # 1 GSM-7 segment
    assert sim.balance == Decimal("999.92")
    send(client, PHONE, text="ã" * 71)  # UCS-2: 2 segments
    assert client.post("/sms/balance").json() == {"balance": "R$999,76"}
    send(client, 123, text="a" * 500)  # invalid numbers cost nothing
    assert sim.balance == Decimal("999.76")
    sim.configure(balance_format="plain", balance="9397.3")
    assert client.post("/sms/balance").json() == {"balance": "9397.30"}
    assert client.post("/sms/segments").json() == {"segments": [{"id": 1, "name": "Corporativo"}]}


def test_reports_window_rules(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    send(client, PHONE)
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=-3)))

    def fmt(moment: dt.datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M")

    week = client.post("/sms/reports/statuses", json={
        "start_at": fmt(now - dt.timedelta(days=8)), "end_at": fmt(now), "limit": 10})
    future = client.post("/sms/reports/statuses", json={
        "start_at": fmt(now), "end_at": fmt(now + dt.timedelta(hours=2)), "limit": 10})
    bad = client.post("/sms/reports/statuses", json={"start_at": "yesterday", "end_at": fmt(now)})
    too_many = client.post("/sms/reports/statuses", json={
        "start_at": fmt(now - dt.timedelta(hours=1)), "end_at": fmt(now), "limit": 30001})
    assert [r.status_code for r in (week, future, bad, too_many)] == [422] * 4
    assert all(r.json()["errors"] for r in (week, future, bad, too_many))
    rows = client.post("/sms/reports/statuses", json={
        "start_at": fmt(now - dt.timedelta(hours=1)), "end_at": fmt(now), "limit": 10}).json()
    row = rows["messages"][0]
    assert row["telefone"] == PHONE
    assert row["status"] == "tentando enviar"
    assert dt.datetime.strptime(row["enviada_em"], "%d/%m/%Y %H:%M")
    assert row["centro_custo"] == "Corporativo"
    assert isinstance(row["job"], int)
    assert row["parametros"] == []


def test_blacklist_store_destroy(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    stored = client.post("/blacklist/store", json={"phones": [{"phone": "5548991234567"}]})
    assert (stored.status_code, stored.content) == (201, b"")
    assert send(client, PHONE).json()["blacklist"] == [{"phone": PHONE}]
    destroyed = client.post("/blacklist/destroy", json={"phones": [{"phone": PHONE}]})
    assert (destroyed.status_code, destroyed.content) == (204, b"")
    assert send(client, PHONE).json()["valids"][0]["phone"] == PHONE
    too_many = client.post("/blacklist/store", json={"phones": [{"phone": PHONE}] * 1001})
    assert too_many.status_code == 422
    assert client.post("/blacklist/store", json={"phones": []}).status_code == 422
    assert sim.blacklist == frozenset()


def test_job_reports(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    body = send(client, PHONE, 11987654321).json()
    send(client, 21987654321)
    job = sim.requests[body["id"]].job
    rows = client.post(f"/sms/reports/statuses/{job}", json={}).json()["messages"]
    assert sorted(r["telefone"] for r in rows) == [11987654321, PHONE]
    assert client.post("/sms/reports/statuses/42", json={}).json() == NOT_FOUND
    jobs = client.post("/sms/reports/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [job, job + 1]
    assert dt.datetime.strptime(jobs[0]["created"], "%d/%m/%Y %H:%M:%S")


def test_link_accesses_and_monthly_job_totals(client: httpx.Client,
                                             sim: KolmeyaSimulator) -> None:
    sim.configure(forced_outcomes={PHONE: 3, 11987654321: 4})
    body = send(client, PHONE, 11987654321).json()
    job = sim.requests[body["id"]].job
    sim.advance(later(3600))
    first = sim.add_access(PHONE)
    sim.add_access(body["valids"][1]["id"], is_robot=True)
    today = sim.now().astimezone(zone(sim.config.timezone)).date().isoformat()
    query = {"start_at": today, "end_at": today, "limit": 10, "is_robot": 0,
             "tenant_segment_id": 0}
    answer = client.post("/sms/accesses", json=query).json()
    assert answer == {"accesses": [first], "totalAccesses": 1}
    assert first["fullphone"] == 55_48991234567 and first["job_id"] == job
    assert first["is_robot"] == 0 and first["tenant_segment_id"] == 1
    assert dt.datetime.strptime(first["accessed_at"], "%Y-%m-%d %H:%M:%S")
    assert set(first) == {"cpf", "name", "fullphone", "message", "is_robot", "accessed_at",
                          "tenant_segment_id", "job_id", "job_created_at"}
    robots = client.post("/sms/accesses", json={**query, "is_robot": 1}).json()
    assert robots["totalAccesses"] == 1
    other_centre = client.post("/sms/accesses", json={**query, "tenant_segment_id": 2}).json()
    assert other_centre == {"accesses": [], "totalAccesses": 0}
    for bad in ({**query, "end_at": "2025-13-01"}, {k: v for k, v in query.items()
                                                     if k != "limit"}, {**query, "limit": 5001}):
        assert client.post("/sms/accesses", json=bad).status_code == 422
    month = today[:7]
    jobs = client.post("/sms/reports/quantity-jobs", json={"period": month}).json()["jobs"]
    assert jobs == [{"id": job, "centro_custo": "Corporativo", "entregues": 1, "acessos": 2}]
    assert client.post("/sms/reports/quantity-jobs",
                       json={"period": "2001-01"}).json() == {"jobs": []}
    for bad_period in ({}, {"period": "2025-11-01"}, {"period": "2025-13"}):
        assert client.post("/sms/reports/quantity-jobs", json=bad_period).status_code == 422


def test_enforced_balance_refuses_whole_send(client: httpx.Client,
                                             sim: KolmeyaSimulator) -> None:
    sim.configure(enforce_balance=True, balance="0.10")
    refused = send(client, PHONE, 11987654321)
    assert refused.status_code == 422
    assert "balance" in refused.json()["errors"][0]
    assert sim.messages == {}
    assert sim.balance == Decimal("0.10")
    assert send(client, PHONE).status_code == 200
    assert sim.balance == Decimal("0.02")


def test_job_pause_and_play(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    body = send(client, PHONE).json()
    job = sim.requests[body["id"]].job
    assert client.post(f"/sms/jobs/{job}/pause").status_code == 200
    assert sim.advance() == 0
    assert client.post(f"/sms/jobs/{job}/play").status_code == 200
    assert sim.advance() == 1
    finished = client.post(f"/sms/jobs/{job}/pause")
    assert finished.status_code == 422
    assert client.post("/sms/jobs/1/pause").json() == NOT_FOUND


# -- faults --------------------------------------------------------------------------------


def test_429_with_retry_after_and_500_accept_nothing(client: httpx.Client,
                                                     sim: KolmeyaSimulator) -> None:
    sim.configure(fail_429_rate=1.0, retry_after=7)
    limited = send(client, PHONE)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["errors"]
    sim.configure(fail_429_rate=0.0, fail_500_rate=1.0)
    assert send(client, PHONE).status_code == 500
    assert sim.requests == {}
    sim.configure(fail_500_rate=0.0, error_after_accept_rate=1.0)
    assert send(client, PHONE, reference="amb").status_code == 500
    assert len(sim.requests) == 1


def test_timeout_after_accept_keeps_request(server: str, sim: KolmeyaSimulator) -> None:
    sim.configure(timeout_after_accept_rate=1.0, hang_seconds=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    impatient = httpx.Client(base_url=f"{server}/api/v1", headers=headers,
                             timeout=httpx.Timeout(5, read=0.5))
    with impatient, pytest.raises(httpx.ReadTimeout):
        send(impatient, PHONE, reference="lost-batch")
    sim.configure(timeout_after_accept_rate=0.0)
    with httpx.Client(base_url=f"{server}/api/v1", headers=headers, timeout=10) as patient:
        found = patient.post("/sms/status/request", json={"reference": "lost-batch"})
    assert found.status_code == 200
    assert len(found.json()["messages"]) == 1


def test_slow_answer_still_processes_a_request_the_client_gave_up_on(
        server: str, sim: KolmeyaSimulator) -> None:
    sim.configure(slow_seconds=0.3)
    impatient = httpx.Client(base_url=f"{server}/api/v1",
                             headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=httpx.Timeout(5, read=0.05))
    with impatient, pytest.raises(httpx.ReadTimeout):
        send(impatient, PHONE, reference="slow")
    deadline = time.monotonic() + 10
    while not sim.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sim.request_status(reference="slow")["messages"][0]["status_code"] == 1


def test_accepted_references_counts_resends(client: httpx.Client, sim: KolmeyaSimulator) -> None:
    send(client, PHONE, 11987654321)
    send(client, PHONE)
    assert sim.accepted_references() == {"m0": 2, "m1": 1}
    assert sim.stats()["accepted_twice"] == 1


# -- control -------------------------------------------------------------------------------


def test_control_endpoints(client: httpx.Client, server: str, sim: KolmeyaSimulator) -> None:
    cfg = httpx.post(f"{server}/_sim/config", json={"blacklist": ["11911111111"],
                                                     "balance": "50"})
    assert cfg.status_code == 200
    assert cfg.json()["token"] == "********"
    assert httpx.post(f"{server}/_sim/config", json={"fail_429_rate": 2}).status_code == 422
    assert httpx.post(f"{server}/_sim/config", json={"nope": 1}).status_code == 422
    send(client, PHONE, 11911111111)
    assert httpx.post(f"{server}/_sim/advance").json() == {"changed": 1}
    reply = httpx.post(f"{server}/_sim/reply", json={"phone": PHONE, "text": "oi"})
    assert reply.json()["message"]["phone"] == str(PHONE)
    missing = httpx.post(f"{server}/_sim/reply", json={"phone": 11900000000, "text": "oi"})
    assert missing.status_code == 404
    stats = httpx.get(f"{server}/_sim/stats").json()
    assert stats["requests"] == 1
    assert stats["messages"] == 1
    assert stats["rejected"]["blacklist"] == 1
    assert stats["replies"] == 1
    assert stats["balance"] == "49.92"
    assert httpx.post(f"{server}/_sim/reset").status_code == 200
    assert httpx.get(f"{server}/_sim/stats").json()["messages"] == 0
    assert sim.balance == Decimal("50")


def test_control_disabled_hides_sim_endpoints(sim: KolmeyaSimulator) -> None:
    with serve_in_thread(create_app(sim, control=False)) as base:
        assert httpx.get(f"{base}/_sim/stats").json() == NOT_FOUND
        assert httpx.post(f"{base}/_sim/reset").status_code == 404


def test_configure_validates() -> None:
    simulator = KolmeyaSimulator()
    try:
        with pytest.raises(ConfigurationError, match="callback_drop_rate"):
            simulator.configure(callback_drop_rate=1.5)
        with pytest.raises(ConfigurationError, match="unknown"):
            simulator.configure(colour="blue")
        with pytest.raises(ConfigurationError, match="callback_shape"):
            simulator.configure(callback_shape="round")
        with pytest.raises(ConfigurationError):
            simulator.configure(blacklist=["+55 48"])
        assert "sim-token" not in repr(simulator.config)
        assert simulator.config.callback_drop_rate == 0.0
    finally:
        simulator.close()
