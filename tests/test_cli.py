"""The ``smskit`` command, through click's CliRunner and through real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest
from click.testing import CliRunner, Result

from smskit.cli import build_cli
from smskit.cli._base import CsvSource, parse_when
from smskit.config import Settings
from smskit.errors import ValidationError
from smskit.kit import SmsKit
from smskit.models import State


def _runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told otherwise
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """A clean configuration: loopback provider, a fresh SQLite file, no smskit.toml."""
    for key in list(os.environ):
        if key.startswith("SMSKIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    values = {
        "SMSKIT_PROVIDER": "loopback",
        "SMSKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def run(*args: str, input: str | None = None) -> Result:
    return _runner().invoke(build_cli(), list(args), input=input, catch_exceptions=False)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def kit(env: Dict[str, str]) -> Iterator[SmsKit]:
    """A kit on the same database the commands use (to check what they stored)."""
    with SmsKit(Settings.load(environ=env)) as instance:
        yield instance


def assert_one_error_line(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# -- send -----------------------------------------------------------------------------------
def test_send_renders_the_template_and_sends_through_the_provider(kit: SmsKit) -> None:
    data = run_json("send", "(11) 98765-4321", "Olá {{ nome }}!", "--var", "nome=Ana")
    assert data["state"] == "sent"
    assert data["phone"] == "+5511987654321"
    assert data["body"] == "Olá Ana!"
    assert data["encoding"] == "UCS-2"
    assert data["provider_message_id"]
    stored = kit.get(data["id"])
    assert stored is not None and stored.state is State.SENT


def test_send_human_output(env: Dict[str, str]) -> None:
    result = run("send", "11987654321", "Oi")
    assert result.exit_code == 0
    assert "sent" in result.stdout and "+5511987654321" in result.stdout


def test_send_with_an_idempotency_key_sends_once(kit: SmsKit) -> None:
    first = run_json("send", "11987654321", "Oi", "--idempotency-key", "pedido-42")
    second = run_json("send", "11987654321", "Oi", "--idempotency-key", "pedido-42")
    assert first["id"] == second["id"]
    assert (first["created"], second["created"]) == (True, False)
    assert len(kit.store.list_messages()) == 1


def test_send_later_queues_without_sending(kit: SmsKit) -> None:
    data = run_json("send", "11987654321", "Oi", "--at", "2999-01-01T10:00")
    assert data["state"] == "outgoing"
    assert data["scheduled_at"].startswith("2999-01-01T13:00")  # 10:00 in São Paulo
    message = kit.get(data["id"])
    assert message is not None and message.state is State.OUTGOING


def test_an_invalid_phone_is_one_red_line_and_stores_nothing(kit: SmsKit) -> None:
    result = run("send", "(11) 98765-432", "Oi")
    assert_one_error_line(result, 1, "invalid phone number", "(11) 98765-432")
    assert kit.store.list_messages() == []


def test_a_missing_variable_names_it(kit: SmsKit) -> None:
    result = run("send", "11987654321", "Olá {{ nome }}")
    assert_one_error_line(result, 1, "'nome'", "+5511987654321")
    assert kit.store.list_messages() == []


def test_a_blacklisted_number_is_canceled_and_exits_1(kit: SmsKit) -> None:
    run_json("blacklist", "add", "11987654321")
    result = run("send", "11987654321", "Oi")
    assert_one_error_line(result, 1, "canceled", "blacklist")
    (message,) = kit.store.list_messages()
    assert message.state is State.CANCELED


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("send",), "Missing argument"),
        (("send", "11987654321", "Oi", "--at", "25:00"), "--at"),
        (("send", "11987654321", "Oi", "--var", "novalue"), "NAME=VALUE"),
        (("nosuchcommand",), "No such command"),
        (("schedule", "add", "x", "--text", "Oi", "--to", "11987654321"), "--at"),
    ],
)
def test_usage_errors_exit_2_with_one_line(env: Dict[str, str], args: List[str],
                                           fragment: str) -> None:
    assert_one_error_line(run(*args), 2, fragment)


def test_configuration_errors_are_one_line(env: Dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_DATABASE_URL", "nosuchscheme://x")
    assert_one_error_line(run("send", "11987654321", "Oi"), 1, "nosuchscheme")


@pytest.mark.parametrize("url", [
    "postgresql://smskit:hunter2@db.example.com:54x9/smskit",  # a typo in the port
    "postgresql://smskit:hunter2@[::1/smskit",  # an unclosed IPv6 bracket
    "sqlite://smskit:hunter2@/sms.db",  # a SQLite URL with a host part
    "postgresql+nosuchdriver://smskit:hunter2@127.0.0.1/smskit",  # an unknown driver
])
@pytest.mark.parametrize("command", [("send", "11987654321", "Oi"), ("db", "check")])
def test_a_malformed_database_url_is_a_configuration_error(
        env: Dict[str, str], url: str, command: List[str]) -> None:
    line = assert_one_error_line(run("--database", url, *command), 1, "database URL")
    assert "unexpected error" not in line and "--debug" not in line
    assert "hunter2" not in line


@pytest.mark.parametrize(("key", "value"), [("SMSKIT_MAX_SEGMENTS", "0"),
                                          ("SMSKIT_PRICE_PER_SEGMENT", "-0.08")])
def test_a_setting_that_would_reject_every_message_fails_before_send_bulk_stores_any(
        env: Dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str,
        value: str) -> None:
    # Read at send time, these made every row a stored 'rejected' message and exited 0.
    monkeypatch.setenv(key, value)
    path = _write_csv(tmp_path / "clientes.csv", CUSTOMERS)
    result = run("send-bulk", str(path), "--phone-column", "telefone", "-t", TEMPLATE)
    assert_one_error_line(result, 1, key[len("SMSKIT_"):].lower())
    assert not (tmp_path / "cli.db").exists()


def test_a_bare_path_as_database_url_says_how_to_write_it(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_DATABASE_URL", "sms.db")
    assert_one_error_line(run("send", "11987654321", "Oi"), 1, "sqlite:///sms.db")


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
        env: Dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SmsKit, "send", boom)
    assert_one_error_line(run("send", "11987654321", "Oi"), 1, "RuntimeError: disk on fire",
                          "--debug")
    debug = run("--debug", "send", "11987654321", "Oi")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr


def test_secrets_never_show_in_an_unexpected_error(env: Dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", "tok-very-secret-123")

    def leak(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("request with Bearer tok-very-secret-123 failed")

    monkeypatch.setattr(SmsKit, "send", leak)
    line = assert_one_error_line(run("send", "11987654321", "Oi"), 1)
    assert "tok-very-secret-123" not in line and "********" in line


def test_global_config_file(env: Dict[str, str], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSKIT_PROVIDER")
    config = tmp_path / "conf" / "prod.toml"
    config.parent.mkdir()
    config.write_text('[smskit]\nprovider = "loopback"\nprice_per_segment = "0.10"\n',
                      encoding="utf-8")
    result = run("--config", str(config), "segments", "Oi", "--json")
    assert json.loads(result.stdout)["cost"] == "0.10"
    assert run("--config", str(config), "balance", "--json").exit_code == 0
    assert_one_error_line(run("--config", str(tmp_path / "nope.toml"), "balance"), 1,
                          "nope.toml")


# -- send-bulk ------------------------------------------------------------------------------
def _write_csv(path: Path, rows: List[List[str]], *, delimiter: str = ";",
               encoding: str = "utf-8-sig") -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


CUSTOMERS = [
    ["nome", "telefone", "valor"],
    ["Ana", "(11) 98765-1111", "R$ 10,00"],
    ["Bia", "123", "R$ 5,00"],
    ["Caio", "+55 21 99876-2222", "R$ 7,50"],
    ["Duda", "", "R$ 1,00"],
    ["Enzo", "31988887777", "R$ 3,00"],
]
TEMPLATE = "Olá {{ nome }}, sua fatura de {{ valor }} vence amanhã."


def test_send_bulk_sends_valid_rows_and_lists_the_rejected_ones(kit: SmsKit,
                                                                tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "clientes.csv", CUSTOMERS)
    data = run_json("send-bulk", str(path), "--template", TEMPLATE,
                    "--phone-column", "telefone", "--idempotency-prefix", "fatura-11")
    assert data["summary"]["total"] == 5
    assert data["summary"]["sent"] == 3
    assert data["summary"]["rejected"] == 2
    assert [(r["row"], r["recipient"], r["state"]) for r in data["rejections"]] == [
        (2, "123", "rejected"), (4, "", "rejected")]
    assert "invalid phone number '123'" in data["rejections"][0]["reason"]
    bodies = {m.phone: m.body for m in kit.store.list_messages(state=State.SENT)}
    assert bodies == {
        "+5511987651111": "Olá Ana, sua fatura de R$ 10,00 vence amanhã.",
        "+5521998762222": "Olá Caio, sua fatura de R$ 7,50 vence amanhã.",
        "+5531988887777": "Olá Enzo, sua fatura de R$ 3,00 vence amanhã.",
    }
    # A re-run with the same prefix sends nothing again and records no rejection twice.
    again = run_json("send-bulk", str(path), "--template", TEMPLATE,
                     "--phone-column", "telefone", "--idempotency-prefix", "fatura-11")
    assert again["summary"]["duplicates"] == 5
    assert again["summary"]["sent"] == 0
    assert len(kit.store.list_messages(state=State.SENT)) == 3
    assert len(kit.store.list_messages(state=State.REJECTED)) == 2


def test_send_bulk_human_output_and_limit(env: Dict[str, str], tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.csv", CUSTOMERS)
    result = run("send-bulk", str(path), "-t", TEMPLATE, "--phone-column", "telefone",
                 "--show", "1")
    assert result.exit_code == 0, result.stderr
    assert "rows read" in result.stdout
    assert "123" in result.stdout
    assert "1 more" in result.stdout


def test_send_bulk_missing_column_fails_before_sending(kit: SmsKit, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.csv", CUSTOMERS)
    result = run("send-bulk", str(path), "--template", "Oi")
    assert_one_error_line(result, 1, "no column 'phone'", "telefone")
    assert kit.store.list_messages() == []


def test_send_bulk_skips_the_empty_rows_of_an_excel_export(kit: SmsKit, tmp_path: Path) -> None:
    # Excel in Portuguese: ';', CRLF, a trailing ';' on every line, and ';;;' for the rows
    # that were cleared rather than deleted (and an empty line, which csv already skipped).
    lines = ["telefone;nome;valor;", "11987651111;Ana;R$ 10,00;", ";;;", "",
             "21998762222;Bia;R$ 5,00;", ";;;", " ; ; ;"]
    path = tmp_path / "clientes.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    data = run_json("send-bulk", str(path), "--phone-column", "telefone", "--encoding",
                    "cp1252", "-t", "Olá {{ nome }}, fatura de {{ valor }}.")
    assert data["summary"]["total"] == 2
    assert (data["summary"]["sent"], data["summary"]["rejected"]) == (2, 0)
    assert data["rejections"] == []
    assert kit.store.list_messages(state=State.REJECTED) == []


def test_send_bulk_delimiter_is_one_character_or_tab(kit: SmsKit, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.tsv", CUSTOMERS, delimiter="\t")
    result = run("send-bulk", str(path), "--phone-column", "telefone", "-t", TEMPLATE,
                 "--delimiter", ";;")
    assert_one_error_line(result, 2, "--delimiter", "one character")
    assert kit.store.list_messages() == []
    for typed in ("\\t", "tab"):  # what people type in a shell for a tab
        data = run_json("send-bulk", str(path), "--phone-column", "telefone", "-t", TEMPLATE,
                        "--delimiter", typed, "--idempotency-prefix", "tsv")
        assert data["summary"]["total"] == 5


def test_send_bulk_refuses_a_template_variable_no_column_gives(kit: SmsKit,
                                                                tmp_path: Path) -> None:
    # A typo in the template ("vencimeto") used to reject every row, store a rejected record
    # for each and exit 0; like a missing phone column, it now stops the command up front.
    path = _write_csv(tmp_path / "clientes.csv", CUSTOMERS)
    result = run("send-bulk", str(path), "--phone-column", "telefone",
                 "-t", "Olá {{ nome }}, sua fatura vence {{ vencimeto }}.")
    assert_one_error_line(result, 1, "'vencimeto'", "nome, telefone, valor", "--var")
    assert kit.store.list_messages() == []
    # What --var or a default gives is there; a blank cell stays a per-row rejection.
    data = run_json("send-bulk", str(path), "--phone-column", "telefone",
                    "-t", "Olá {{ nome }}, {{ valor }} vence {{ dia }}{{ x | default('') }}.",
                    "--var", "dia=amanhã")
    assert (data["summary"]["sent"], data["summary"]["rejected"]) == (3, 2)


def test_send_bulk_wrong_encoding_names_the_line(kit: SmsKit, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "latin.csv",
                      [["nome", "phone"], ["João", "11987651111"]], encoding="latin-1")
    result = run("send-bulk", str(path), "--template", "Oi {{ nome }}")
    assert_one_error_line(result, 1, "line 2", "--encoding latin-1")
    data = run_json("send-bulk", str(path), "--template", "Oi {{ nome }}",
                    "--encoding", "latin-1")
    assert data["summary"]["sent"] == 1
    (message,) = kit.store.list_messages()
    assert message.body == "Oi João"


def test_send_bulk_sends_nothing_when_a_line_deep_in_the_file_has_another_encoding(
        kit: SmsKit, tmp_path: Path) -> None:
    # An export from Excel in Portuguese (cp1252, ';') whose first accent is on row 1,500:
    # the rows above it must not go out before the encoding error, or the re-run with the
    # right --encoding sends them twice.
    rows = [["telefone", "nome"]] + [[f"119{i:08d}", f"Cliente {i}"] for i in range(2000)]
    rows[1500] = ["11988887777", "Conceição “Ção” \u2013 VIP"]
    path = _write_csv(tmp_path / "clientes.csv", rows, encoding="cp1252")
    result = run("send-bulk", str(path), "--phone-column", "telefone", "-t", "Oi {{ nome }}")
    assert_one_error_line(result, 1, "line 1501", "--encoding cp1252")
    assert kit.store.list_messages(limit=10) == []
    data = run_json("send-bulk", str(path), "--phone-column", "telefone",
                    "-t", "Oi {{ nome }}", "--encoding", "cp1252")
    assert data["summary"]["sent"] == 2000
    (message,) = kit.store.list_messages(phone="+5511988887777")
    assert message.body == "Oi Conceição “Ção” \u2013 VIP"


@pytest.mark.parametrize("prefix", ["fatura-12", None])
def test_send_bulk_stopped_by_ctrl_c_says_what_went_out_and_how_to_go_on(
        kit: SmsKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        prefix: Optional[str]) -> None:
    from smskit.outbox.compose import Composer

    rows = [["telefone", "nome"]] + [[f"119{i:08d}", f"Cliente {i}"] for i in range(2500)]
    path = _write_csv(tmp_path / "clientes.csv", rows)
    args = ["send-bulk", str(path), "--phone-column", "telefone", "-t", "Oi {{ nome }}"]
    if prefix:
        args += ["--idempotency-prefix", prefix]
    body = Composer.body
    made = [0]

    def ctrl_c_at_row_1500(self: Composer, *a: Any, **kw: Any) -> str:
        made[0] += 1
        if made[0] == 1500:  # the operator presses Ctrl-C while the second chunk is made
            raise KeyboardInterrupt
        return body(self, *a, **kw)

    monkeypatch.setattr(Composer, "body", ctrl_c_at_row_1500)
    stopped = run(*args)
    assert stopped.exit_code == 130
    assert "Traceback" not in stopped.stdout + stopped.stderr
    message = " ".join(stopped.stderr.split())
    done = re.search(r"interrupted after (\d+) row\(s\) were done", message)
    assert done is not None, message
    went = int(done.group(1))
    assert 0 < went < 1500 and "`smskit worker`" in message
    # what was done is stored; so may be the chunk that was at the gateway (worker's to settle)
    stored = kit.store.list_messages(limit=5000)
    assert went <= len(stored) < 1500
    assert {m.state for m in stored} <= {State.SENT, State.OUTGOING}
    went = len(stored)
    monkeypatch.setattr(Composer, "body", body)
    if prefix is None:
        assert "a re-run sends every row again" in message
        return
    assert f"the same --idempotency-prefix {prefix}" in message
    data = run_json(*args)  # as the message says: the rest goes out, nobody twice
    assert (data["summary"]["sent"], data["summary"]["duplicates"]) == (2500 - went, went)
    again = kit.store.list_messages(limit=5000)
    assert len(again) == 2500 and len({m.phone for m in again}) == 2500


def test_csv_source_streams(tmp_path: Path) -> None:
    rows = [["phone", "nome"]] + [[f"119876{i:05d}", f"n{i}"] for i in range(20000)]
    path = _write_csv(tmp_path / "big.csv", rows, delimiter=",")
    with CsvSource(path) as source:
        iterator = source.rows()
        assert next(iterator) == {"phone": "11987600000", "nome": "n0"}
        assert source.bytes_read < source.size / 10
        assert sum(1 for _ in iterator) == 19999
        assert source.bytes_read == source.size


def test_csv_source_guesses_the_delimiter_and_strips_headers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(" phone \t nome\n11987651111\tAna\n", encoding="utf-8")
    with CsvSource(path) as source:
        assert source.fieldnames == ["phone", "nome"]
        assert list(source.rows()) == [{"phone": "11987651111", "nome": "Ana"}]


# -- status, balance ----------------------------------------------------------------------------
def test_status_shows_the_message(env: Dict[str, str]) -> None:
    sent = run_json("send", "11987654321", "Oi")
    data = run_json("status", sent["id"])
    assert data["id"] == sent["id"]
    assert data["state"] == "sent"
    assert isinstance(data["history"], list)
    human = run("status", sent["id"])
    assert human.exit_code == 0 and sent["id"] in human.stdout


def test_status_of_an_unknown_id(env: Dict[str, str]) -> None:
    assert_one_error_line(run("status", "NOPE"), 1, "'NOPE'")


def test_balance(env: Dict[str, str]) -> None:
    assert run_json("balance") == {"provider": "loopback", "balance": "100.00"}
    result = run("balance")
    assert "R$ 100,00" in result.stdout


# -- blacklist ---------------------------------------------------------------------------------
def test_blacklist_add_list_remove(kit: SmsKit) -> None:
    added = run_json("blacklist", "add", "(11) 98765-4321", "21998761234", "--reason", "pediu")
    assert added["added"] == ["+5511987654321", "+5521998761234"]
    again = run_json("blacklist", "add", "11987654321")
    assert again == {"added": [], "already": ["+5511987654321"], "gateway": None}
    listed = run_json("blacklist", "list")
    assert [e["phone"] for e in listed] == ["+5511987654321", "+5521998761234"]
    assert listed[0]["reason"] == "pediu"
    exported = run("blacklist", "list", "--csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["phone"] for r in rows] == ["+5511987654321", "+5521998761234"]
    assert run_json("blacklist", "remove", "21998761234")["removed"] == ["+5521998761234"]
    assert not kit.store.is_blacklisted("+5521998761234")
    assert kit.store.is_blacklisted("+5511987654321")


def test_blacklist_add_checks_every_number_first(kit: SmsKit) -> None:
    result = run("blacklist", "add", "11987654321", "12345")
    assert_one_error_line(result, 1, "'12345'")
    assert kit.store.list_blacklist() == []


def test_blacklist_import(kit: SmsKit, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "optouts.csv",
                      [["telefone"], ["11987651111"], ["abc"], ["11987651111"], ["21998762222"]])
    data = run_json("blacklist", "import", str(path), "--phone-column", "telefone")
    assert (data["added"], data["already"], data["invalid"]) == (2, 1, 1)
    assert data["invalid_rows"][0]["row"] == 2
    assert {e.phone for e in kit.store.list_blacklist()} == {"+5511987651111",
                                                            "+5521998762222"}


# -- schedule --------------------------------------------------------------------------------
def test_schedule_add_list_run_remove(kit: SmsKit) -> None:
    created = run_json("schedule", "add", "lembrete", "--text", "Bom dia {{ nome }}",
                       "--var", "nome=Ana", "--to", "11987654321",
                       "--rrule", "FREQ=DAILY;BYHOUR=9;BYMINUTE=0")
    assert created["name"] == "lembrete"
    assert created["next_run_at"].endswith("T12:00:00+00:00")  # 09:00 in São Paulo
    listed = run_json("schedule", "list")
    assert [s["id"] for s in listed] == [created["id"]]
    assert run_json("schedule", "run") == []  # nothing due yet
    human = run("schedule", "list")
    assert created["id"] in human.stdout
    assert run_json("schedule", "remove", created["id"]) == {"removed": created["id"]}
    assert kit.store.list_schedules() == []
    assert_one_error_line(run("schedule", "remove", created["id"]), 1, created["id"])


def test_schedule_add_rejects_a_bad_phone(kit: SmsKit) -> None:
    result = run("schedule", "add", "x", "--text", "Oi", "--to", "1198765", "--at", "23:00")
    assert_one_error_line(result, 1, "'1198765'")
    assert kit.store.list_schedules() == []


# -- worker ----------------------------------------------------------------------------------
def test_worker_once_sends_what_is_due(kit: SmsKit) -> None:
    outcome = kit.send("11987654321", "Oi", dispatch=False)
    data = run_json("worker", "--once")
    assert data["sent"] == 1
    message = kit.get(outcome.message_id or "")
    assert message is not None and message.state is State.SENT
    assert run_json("worker", "--once")["sent"] == 0


# -- segments, plugins -------------------------------------------------------------------------
def test_segments(env: Dict[str, str]) -> None:
    data = run_json("segments", "Olá, sua fatura vence amanhã", "--transliterate")
    assert (data["encoding"], data["segments"], data["cost"]) == ("UCS-2", 1, "0.08")
    assert data["non_gsm_characters"] == ["á", "ã"]
    assert data["transliteration"]["text"] == "Ola, sua fatura vence amanha"
    assert data["transliteration"]["encoding"] == "GSM-7"
    piped = _runner().invoke(build_cli(), ["segments", "-", "--json"], input="x" * 161 + "\n")
    assert json.loads(piped.stdout)["segments"] == 2


def test_plugins_reports_loaded_and_disabled(env: Dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_DISABLE_PLUGINS", "odoo")
    data = run_json("plugins")
    status = {p["name"]: p["status"] for p in data["plugins"]}
    assert status["kolmeya"] == "loaded"
    assert status["odoo"] == "disabled"
    assert {"kolmeya", "loopback"} <= set(data["providers"])
    assert {"sqlite", "memory"} <= set(data["stores"])
    human = run("plugins")
    assert "kolmeya" in human.stdout and "disabled" in human.stdout


def test_a_bare_group_shows_its_help(env: Dict[str, str]) -> None:
    result = run("blacklist")
    assert result.exit_code == 0
    assert "import" in result.stdout and "Error" not in result.stderr


def test_help_lists_every_command(env: Dict[str, str]) -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("send", "send-bulk", "status", "balance", "blacklist", "schedule",
                 "segments", "serve", "worker", "plugins", "demo"):
        assert name in result.stdout


# -- helpers ---------------------------------------------------------------------------------
def test_parse_when() -> None:
    import datetime as dt

    now = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.timezone.utc)  # 11:00 in São Paulo
    assert parse_when("10:30", "America/Sao_Paulo", now) == dt.datetime(
        2026, 11, 27, 13, 30, tzinfo=dt.timezone.utc)
    assert parse_when("18:00", "America/Sao_Paulo", now) == dt.datetime(
        2026, 11, 26, 21, 0, tzinfo=dt.timezone.utc)
    assert parse_when("2026-12-01T09:00-03:00", "UTC") == dt.datetime(
        2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_when("2026-12-01T09:00Z", "America/Sao_Paulo").hour == 9
    with pytest.raises(ValidationError, match="amanhã"):
        parse_when("amanhã", "America/Sao_Paulo")


# -- the Kolmeya provider and the plugin command ---------------------------------------------------
def test_send_and_refresh_through_the_kolmeya_simulator(env: Dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from smskit.testing.servers import serve_in_thread
    from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig

    sim = KolmeyaSimulator(SimulatorConfig(token="t0ken", forced_outcomes={"11987654321": 4}))
    try:
        with serve_in_thread(sim.app) as base:
            monkeypatch.setenv("SMSKIT_PROVIDER", "kolmeya")
            monkeypatch.setenv("SMSKIT_KOLMEYA_BASE_URL", f"{base}/api/v1")
            monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", "t0ken")
            sent = run_json("send", "11987654321", "Oi")
            assert sent["state"] == "sent"
            assert sim.accepted_references() == {sent["id"]: 1}
            sim.advance()
            refreshed = run_json("status", sent["id"], "--refresh")
            assert refreshed["state"] == "error"
            assert run_json("balance")["balance"] == "999.92"
            monkeypatch.setenv("SMSKIT_KOLMEYA_TOKEN", "wrong")
            result = run("send", "11987654322", "Oi")
            # Stored, not sent: said so (not as an error), with the gateway's answer.
            assert result.exit_code == 3
            assert "queued" in result.stdout and "401" in result.stdout
            assert "wrong" not in result.stdout + result.stderr
    finally:
        sim.close()


def test_kolmeya_simulate_command_serves_the_api(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "smskit", "kolmeya", "simulate", "--port", str(port),
         "--token", "abc", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/sms/balance",
                                    headers={"Authorization": "Bearer abc"}, json={})
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert answer.status_code == 200
        assert "balance" in answer.json()
        refused = httpx.post(f"http://127.0.0.1:{port}/api/v1/sms/balance",
                             headers={"Authorization": "Bearer nope"}, json={})
        assert refused.status_code in (401, 403)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_plugin_commands_are_loaded_lazily(env: Dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    result = run("kolmeya", "simulate", "--help")
    assert result.exit_code == 0, result.stderr
    assert "--outcome" in result.stdout
    assert "kolmeya" in run("--help").stdout
    monkeypatch.setenv("SMSKIT_DISABLE_PLUGINS", "kolmeya")
    assert_one_error_line(run("kolmeya", "simulate", "--help"), 2, "No such command")


def test_kolmeya_simulate_rejects_a_bad_outcome() -> None:
    result = _runner().invoke(build_cli(), ["kolmeya", "simulate", "--outcome", "3"])
    assert_one_error_line(result, 2, "CODE=SHARE")


# -- real subprocesses -------------------------------------------------------------------------
def _subprocess_env(tmp_path: Path) -> Dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}
    environ.update(SMSKIT_PROVIDER="loopback",
                   SMSKIT_DATABASE_URL=f"sqlite:///{tmp_path / 'sub.db'}")
    return environ


def test_python_m_smskit_segments(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "smskit", "segments", "Olá", "--json"],
                          capture_output=True, text=True, encoding="utf-8",
                          env=_subprocess_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["encoding"], data["segments"], data["characters"]) == ("UCS-2", 1, 3)


def test_python_m_smskit_error_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "smskit", "send", "123", "Oi"],
                          capture_output=True, text=True, encoding="utf-8",
                          env=_subprocess_env(tmp_path), cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "Error: invalid phone number '123': not a valid number for region BR (too short)"]


def _broken_plugin(tmp_path: Path) -> Dict[str, str]:
    """An environment where a third-party distribution declares an ``smskit`` entry point
    whose module raises (not ImportError) when imported."""
    site = tmp_path / "site"
    info = site / "smskit_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smskit-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[smskit]\nbroken = smskit_broken\n")
    (site / "smskit_broken.py").write_text('raise RuntimeError("ACME_API_KEY is not set")\n')
    environ = _subprocess_env(tmp_path)
    environ["PYTHONPATH"] = os.pathsep.join(
        [p for p in (environ.get("PYTHONPATH"), str(site)) if p])
    return environ


def test_a_plugin_that_raises_on_import_is_reported_and_breaks_nothing(tmp_path: Path) -> None:
    environ = _broken_plugin(tmp_path)

    def smskit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "smskit", *args], capture_output=True,
                              text=True, encoding="utf-8", env=environ, cwd=tmp_path,
                              timeout=60)

    listing = smskit("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    status = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert status["kolmeya"]["status"] == "loaded"
    assert status["broken"]["status"] == "failed"
    assert "RuntimeError: ACME_API_KEY is not set" in status["broken"]["detail"]
    assert "SMSKIT_DISABLE_PLUGINS=broken" in status["broken"]["fix"]
    environ["COLUMNS"] = "200"
    human = smskit("plugins")
    assert human.returncode == 0 and "SMSKIT_DISABLE_PLUGINS=broken" in human.stdout
    sent = smskit("send", "11987654321", "Oi", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["state"] == "sent"
    simulate = smskit("kolmeya", "simulate", "--help")
    assert simulate.returncode == 0, simulate.stderr
    assert "--delivery-delay" in simulate.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_answers_and_stops_on_sigint(tmp_path: Path) -> None:
    import signal
    import time

    port = _free_port()
    environ = {**_subprocess_env(tmp_path), "SMSKIT_WEBHOOK_SECRET": "s3cret"}
    proc = subprocess.Popen([sys.executable, "-m", "smskit", "serve", "--port", str(port),
                             "--log-level", "warning"], env=environ, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert health.status_code == 200
        refused = httpx.post(f"http://127.0.0.1:{port}/webhooks/loopback/status?token=nope",
                             json={"message_id": "x", "state": "delivered"})
        assert refused.status_code in (401, 403)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "SMSKIT_PUBLIC_URL is not set" in err
    assert "s3cret" not in out + err


def test_worker_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "smskit", "worker", "--interval", "0.2"],
                            env=_subprocess_env(tmp_path), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "sub.db").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "worker stopped" in err


def test_demo_and_serve_name_the_missing_extra(env: Dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    for command in ("demo", "serve"):
        assert_one_error_line(run(command), 1, "uvicorn", "pip install 'smskit-sdk[server]'")
