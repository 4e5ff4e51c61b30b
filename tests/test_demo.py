"""``smskit demo``: the whole scenario in a real subprocess, and its building blocks."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from cli_helpers import cli, cli_env  # noqa: F401 - fixture
from smskit.cli.scenario import BLACKLISTED, DEFERRED, LANDLINE, OPTOUT, _quiet_window, contacts
from smskit.errors import InvalidPhoneError
from smskit.phone import Phone
from smskit.policy import QuietHours

TZ = "America/Sao_Paulo"


def _env() -> Dict[str, str]:
    # The demo must work with nothing configured, whatever the caller's environment holds.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    environ["SMSKIT_PROVIDER"] = "nosuchprovider"  # ignored by the demo
    return environ


@pytest.mark.slow
def test_demo_json_reaches_every_expected_state(tmp_path: Path) -> None:
    (tmp_path / "smskit.toml").write_text('[smskit]\ndatabase_url = "nosuch://x"\n')
    proc = subprocess.run([sys.executable, "-m", "smskit", "demo", "--json"],
                          capture_output=True, text=True, encoding="utf-8", env=_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["problems"] == []

    totals = report["totals"]
    people = contacts()
    assert totals["contacts"] == len(people) == 30
    assert (totals["rejected"], totals["canceled"], totals["deferred"]) == (1, 1, 1)
    assert totals["delivered"] >= 1 and totals["error"] >= 1 and totals["expired"] >= 1
    assert totals["sent"] == 27 == totals["delivered"] + totals["error"] + totals["expired"]
    assert totals["failed"] == totals["error"] + totals["expired"]
    assert totals["cost"] == "2.16"  # 27 one-segment UCS-2 messages at R$ 0,08

    rows = report["contacts"]
    assert [r["name"] for r in rows] == [p.name for p in people]
    assert rows[LANDLINE]["state"] == "rejected" and "fixed line" in rows[LANDLINE]["detail"]
    assert rows[BLACKLISTED]["state"] == "canceled"
    assert rows[DEFERRED]["state"] == "deferred" and "quiet hours" in rows[DEFERRED]["detail"]
    finals = {r["state"] for r in rows} - {"rejected", "canceled", "deferred"}
    assert finals == {"delivered", "error", "expired"}

    optout = report["optout"]
    assert optout["blacklisted"] is True
    assert optout["phone"] == Phone.parse(people[OPTOUT].phone).e164
    assert optout["reply"] == "SAIR"

    schedule = report["schedule"]
    assert (schedule["first_call_runs"], schedule["second_call_runs"]) == (1, 0)
    assert (schedule["messages"], schedule["canceled"]) == (3, 1)
    occurrence = dt.datetime.fromisoformat(schedule["occurrence"])
    assert occurrence.astimezone(_zone()).strftime("%H:%M") == "09:00"
    assert schedule["next_run_at"] > schedule["occurrence"]

    assert report["callbacks"]["statuses"] == 27
    assert report["callbacks"]["replies"] == 1
    assert report["server_url"].startswith("http://127.0.0.1:")
    assert report["balance"] == "997.84"


@pytest.mark.slow
def test_failover_demo_moves_the_rest_to_twilio_and_loses_nothing(tmp_path: Path) -> None:
    from smskit.cli.failover import CONTACTS, WAVES

    proc = subprocess.run([sys.executable, "-m", "smskit", "demo", "--failover", "--json"],
                          capture_output=True, text=True, encoding="utf-8", env=_env(),
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert (report["lost"], report["sent_twice"]) == (0, 0)
    wave = CONTACTS // WAVES
    totals = {p["provider"]: p for p in report["providers"]}
    assert {k: totals["kolmeya"][k] for k in ("messages", "sent", "moved_out", "circuit")} == {
        "messages": wave, "sent": wave, "moved_out": wave, "circuit": "open"}
    assert {k: totals["twilio"][k] for k in ("messages", "sent", "delivered", "moved_in")} == {
        "messages": CONTACTS - wave, "sent": CONTACTS - wave, "delivered": CONTACTS - wave,
        "moved_in": wave}
    # Each provider's own price: R$ 0,08 at Kolmeya, R$ 0,25 at Twilio, one segment each.
    assert (totals["kolmeya"]["cost"], totals["twilio"]["cost"]) == ("1.20", "7.50")
    assert 0 < report["failover_seconds"] < 30
    assert [w["sent"] for w in report["waves"]] == [wave] * WAVES


def test_failover_demo_exits_non_zero_when_an_expectation_fails(
        cli_env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from smskit.cli import failover

    def broken(db_path: object = None, progress: object = None) -> failover.FailoverReport:
        report = failover.FailoverReport(database="x")
        report.problems.append("1 message(s) were sent twice")
        return report

    monkeypatch.setattr(failover, "run_failover_demo", broken)
    result = cli("demo", "--failover", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == ["1 message(s) were sent twice"]


def _zone() -> dt.tzinfo:
    from smskit.timeutil import zone

    return zone(TZ)


@pytest.mark.slow
def test_demo_human_output(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "smskit", "demo"], capture_output=True,
                          text=True, encoding="utf-8", env={**_env(), "COLUMNS": "160"},
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for text in ("Ana Souza", "delivered", "expired", "rejected", "canceled", "deferred",
                 "R$ 2,16", "SAIR", "demo OK"):
        assert text in proc.stdout
    assert "bulk send to 29 contacts" in proc.stderr  # progress lines go to stderr


def test_demo_refuses_an_existing_database(tmp_path: Path) -> None:
    existing = tmp_path / "old.db"
    existing.write_bytes(b"keep me")
    proc = subprocess.run([sys.executable, "-m", "smskit", "demo", "--db", str(existing)],
                          capture_output=True, text=True, encoding="utf-8", env=_env(),
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: the demo needs a fresh database: {existing} already exists"]
    assert existing.read_bytes() == b"keep me"


@pytest.mark.parametrize("hour", [0, 3, 7, 8, 12, 19, 20, 21, 23])
def test_quiet_window_never_holds_now_but_holds_the_deferred_moment(hour: int) -> None:
    local = dt.datetime(2026, 11, 26, hour, 30, tzinfo=_zone())
    now = local.astimezone(dt.timezone.utc)
    window, inside = _quiet_window(now, TZ)
    rules = QuietHours.parse(window, tz=TZ)
    for minutes in (0, 5, 30):  # the whole demo runs well inside a few minutes
        assert rules.next_allowed(now + dt.timedelta(minutes=minutes)) is None
    deferred_to = rules.next_allowed(inside)
    assert deferred_to is not None and deferred_to > inside > now
    if 8 <= hour < 20:
        assert window == "21:00-08:00"


def test_contacts_are_valid_except_the_landline() -> None:
    people = contacts()
    for index, person in enumerate(people):
        if index == LANDLINE:
            with pytest.raises(InvalidPhoneError, match="fixed line"):
                Phone.parse(person.phone)
        else:
            Phone.parse(person.phone)
    assert len({Phone.parse(p.phone).e164 for i, p in enumerate(people) if i != LANDLINE}) == 29
