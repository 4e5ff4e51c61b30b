"""What the user is told is what happens: ``smskit send`` and ``send-bulk`` against the
Kolmeya simulator, and the operator commands ``messages``, ``cancel`` and ``resolve``.

The sequence the issue reported: a send whose gateway call failed printed an error but left
the message queued; the next send flushed it with the new one (Kolmeya refused the second as a
duplicate in the same request: another error) and a third printed ``sent``: the customer got
the SMS twice while the user saw Error, Error, sent. Now the first send says "queued" (exit 3,
not an error), the second says its own message was refused because the queued one went out
in the same request, and the customer gets it once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from cli_helpers import cli, cli_env  # noqa: F401 - fixture
from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

PHONE = "11987654321"


@pytest.fixture
def sim(cli_env: Dict[str, str],  # noqa: F811 - the fixture
        monkeypatch: pytest.MonkeyPatch) -> Iterator[KolmeyaSimulator]:
    simulator = KolmeyaSimulator(SimulatorConfig(token="t0ken", seed=3))
    with serve_in_thread(simulator.app) as base:
        monkeypatch.setenv("SMSKIT_PROVIDER", "kolmeya")
        monkeypatch.setenv("SMSKIT_KOLMEYA_BASE_URL", f"{base}/api/v1")
        monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", "t0ken")
        monkeypatch.setenv("SMSKIT_KOLMEYA_MAX_ATTEMPTS", "1")
        try:
            yield simulator
        finally:
            simulator.close()


def run(*args: str) -> Tuple[int, str, str]:
    result = cli(*args)
    return result.exit_code, result.stdout, getattr(result, "stderr", "")


def as_json(*args: str) -> Tuple[int, Any]:
    code, out, _ = run(*args, "--json")
    return code, json.loads(out)


def sent_to(sim: KolmeyaSimulator) -> int:
    """How many SMS the customer got."""
    return sum(sim.accepted_references().values())


def test_a_failed_gateway_call_is_reported_queued_and_the_customer_gets_one(
        sim: KolmeyaSimulator) -> None:
    # 1. The gateway turns the request away (429, retry at once): nothing was sent.
    sim.configure(fail_429_rate=1.0, retry_after=0, fault_endpoints=["sms/store"])
    code, out, err = run("send", PHONE, "Sua fatura vence amanhã")
    assert code == 3, (out, err)
    assert "queued" in out and "not sent yet" in out and "Error" not in out + err
    assert sent_to(sim) == 0
    # 2. The user tries again: the queued message and the new one go in one request;
    #    Kolmeya sends the number once and refuses the other, and the user is told so.
    sim.configure(fail_429_rate=0.0)
    code, out, err = run("send", PHONE, "Sua fatura vence amanhã")
    assert code == 1
    assert "duplicate" in err and "1 message(s) queued earlier were sent" in err
    assert sent_to(sim) == 1
    # Nothing is left to go out later behind the user's back.
    code, queued = as_json("messages", "--state", "outgoing")
    assert code == 0 and queued == []
    assert sent_to(sim) == 1


def test_a_send_that_may_have_arrived_is_reported_held(sim: KolmeyaSimulator) -> None:
    sim.configure(error_after_accept_rate=1.0, fault_endpoints=["sms/store"])
    code, data = as_json("send", PHONE, "Oi")
    assert code == 3 and data["held"] is True and data["state"] == "outgoing"
    code, out, _ = run("send", PHONE, "Oi")  # text: says held, how to settle it
    assert code == 3 and "held" in out and "smskit resolve" in out
    code, held = as_json("messages", "--held")
    assert code == 0 and [len(b["message_ids"]) for b in held] == [1, 1]


def test_send_bulk_counts_its_own_messages_and_every_outcome(sim: KolmeyaSimulator,
                                                             tmp_path: Path) -> None:
    # An older message waits in the queue (the gateway turned it away once).
    sim.configure(fail_429_rate=1.0, retry_after=0, fault_endpoints=["sms/store"])
    assert run("send", "11987650000", "Antiga")[0] == 3
    sim.configure(fail_429_rate=0.0, invalid=["11987650002"])
    rows = tmp_path / "rows.csv"
    rows.write_text("phone,nome\n11987650001,Ana\n11987650002,Bia\n123,Caio\n",
                    encoding="utf-8")
    code, data = as_json("send-bulk", str(rows), "--template", "Olá {{ nome }}")
    assert code == 0
    summary = data["summary"]
    # Its own three rows only (the older message also went out, counted nowhere here).
    assert (summary["total"], summary["sent"], summary["rejected"], summary["queued"],
            summary["held"]) == (3, 1, 2, 0, 0)
    assert sent_to(sim) == 2
    reasons = {r["recipient"]: r["reason"] for r in data["rejections"]}
    assert reasons == {"11987650002": sim.config.invalid_error, "123": reasons["123"]}, reasons


def test_configuration_errors_store_nothing(cli_env: Dict[str, str],  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("SMSKIT_PROVIDER", "kolmeya")
    code, _, err = run("send", PHONE, "Oi")
    assert code == 1 and "SMSKIT_KOLMEYA_TOKEN" in err
    monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", "t")
    monkeypatch.setenv("SMSKIT_KOLMEYA_MAX_PER_SECOND", "fast")
    code, _, err = run("send", PHONE, "Oi")
    assert code == 1 and "max_per_second" in err
    assert not (tmp_path / "cli.db").exists() or run("messages", "--json")[1].strip() == "[]"


def test_operator_commands_list_show_cancel_and_resolve(sim: KolmeyaSimulator) -> None:
    code, queued = as_json("send", PHONE, "Depois", "--at", "2099-01-01T09:00")
    assert code == 0 and queued["state"] == "outgoing"
    sim.configure(reference_lookup="422", error_after_accept_rate=1.0,
                  fault_endpoints=["sms/store"])
    code, held = as_json("send", "11987654322", "Talvez")
    assert code == 3
    sim.configure(error_after_accept_rate=0.0)
    assert run("worker", "--once")[0] == 0
    code, listing = as_json("messages", "--state", "outgoing")
    by_id = {m["id"]: m for m in listing}
    assert by_id[queued["id"]]["held"] is None
    assert by_id[held["id"]]["held"]["held"] is True
    assert "422" in by_id[held["id"]]["held"]["reason"]
    code, shown = as_json("messages", held["id"])
    assert code == 0 and shown["history"] == [] and shown["held"]["batch_id"]
    code, out, _ = run("messages", held["id"])
    assert "smskit resolve" in out
    # A held message cannot be canceled; a queued one can.
    code, _, err = run("cancel", held["id"])
    assert code == 1 and "smskit resolve" in err
    assert run("cancel", queued["id"])[0] == 0
    code, resolved = as_json("resolve", held["id"], "--sent")
    assert code == 0 and resolved["resolved"] == [held["id"]]
    code, shown = as_json("messages", held["id"])
    assert shown["state"] == "sent" and shown["held"] is None
    assert [e["kind"] for e in shown["history"]] == ["resolved"]
    assert run("resolve", held["id"])[0] == 2  # neither --sent nor --resend
    assert run("resolve", held["id"], "--resend")[0] == 1  # nothing held any more
    assert sent_to(sim) == 1


def test_messages_without_a_database_says_so(cli_env: Dict[str, str]) -> None:  # noqa: F811
    code, _, err = run("messages")
    assert code == 1 and "no smskit database" in err


