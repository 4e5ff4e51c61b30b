"""The command's global options (--database, --provider, --config), commands that fail before
doing anything leaving no database behind, and `smskit db upgrade` / `smskit db check`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from smskit.cli._base import database_url, missing_sqlite_file

PG_URL = os.environ.get("SMSKIT_TEST_POSTGRES_URL")


def _bare_env() -> Dict[str, str]:
    """The environment without any SMSKIT_* variable (no token, no database URL)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SMSKIT_")}


def smskit(cwd: Path, *args: str,
           env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python -m smskit ARGS`` in ``cwd``, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "smskit", *args], capture_output=True,
                          text=True, encoding="utf-8", cwd=cwd, timeout=120,
                          env=env if env is not None else _bare_env())


def files(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir())


def test_send_without_a_token_in_an_empty_directory_leaves_no_database(tmp_path: Path) -> None:
    proc = smskit(tmp_path, "send", "11987654321", "Oi")
    assert proc.returncode == 1
    assert "SMSKIT_KOLMEYA_TOKEN" in proc.stderr
    assert files(tmp_path) == []


@pytest.mark.parametrize("command", [
    ["status", "0000"],
    ["schedule", "remove", "0000"],
    ["campaign", "start", "0000"],
    ["--provider", "loopback", "send", "123", "Oi"],       # an invalid phone
    ["--provider", "nope", "send", "11987654321", "Oi"],   # an unknown provider
    ["db", "check"],
])
def test_failing_commands_create_no_database_file(tmp_path: Path, command: List[str]) -> None:
    proc = smskit(tmp_path, *command)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: ")
    assert files(tmp_path) == []


def test_status_names_the_missing_database(tmp_path: Path) -> None:
    proc = smskit(tmp_path, "--database", "elsewhere.db", "status", "0000")
    assert proc.stderr.strip() == ("Error: no message with id '0000': there is no smskit "
                                   "database at elsewhere.db (choose one with --database or "
                                   "SMSKIT_DATABASE_URL)")


def test_global_database_and_provider_options_win_over_the_environment(tmp_path: Path) -> None:
    env = {**_bare_env(), "SMSKIT_PROVIDER": "kolmeya",
           "SMSKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    proc = smskit(tmp_path, "--database", "opt.db", "--provider", "loopback", "send",
                  "11987654321", "Oi", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    sent = json.loads(proc.stdout)
    assert (sent["state"], sent["provider"]) == ("sent", "loopback")
    assert "opt.db" in files(tmp_path) and "env.db" not in files(tmp_path)
    proc = smskit(tmp_path, "--database", f"sqlite:///{tmp_path / 'opt.db'}", "status",
                  sent["id"], "--json", env=env)
    assert json.loads(proc.stdout)["id"] == sent["id"]


def test_config_option_reads_that_file(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(f'[smskit]\nprovider = "loopback"\n'
                      f'database_url = "sqlite:///{tmp_path / "from-toml.db"}"\n',
                      encoding="utf-8")
    proc = smskit(tmp_path, "--config", str(config), "send", "11987654321", "Oi", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-toml.db").exists()


def test_database_option_values() -> None:
    assert database_url(None) is None
    assert database_url("sms.db") == "sqlite:///sms.db"
    assert database_url("/var/lib/smskit/sms.db") == "sqlite:////var/lib/smskit/sms.db"
    assert database_url("postgres://u@h/db") == "postgres://u@h/db"
    assert missing_sqlite_file("sqlite://") is None
    assert missing_sqlite_file("sqlite:///:memory:") is None
    assert missing_sqlite_file("memory://") is None
    assert missing_sqlite_file("sqlite:////no/such/dir/x.db") == Path("/no/such/dir/x.db")


# -- smskit db -----------------------------------------------------------------------------------
def _revision(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        (revision,) = conn.execute("SELECT version_num FROM smskit_alembic_version").fetchone()
    return str(revision)


def test_db_upgrade_then_check(tmp_path: Path) -> None:
    from smskit.store.sql.engine import head_revision, known_revisions

    proc = smskit(tmp_path, "--database", "ops.db", "db", "check", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report == {"database": "sqlite:///ops.db", "current": None, "head": head_revision(),
                      "up_to_date": False, "known": True}
    assert "run `smskit db upgrade`" in proc.stderr
    assert not (tmp_path / "ops.db").exists()

    proc = smskit(tmp_path, "--database", "ops.db", "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"sqlite:///ops.db: upgraded from empty to {head_revision()}"
    assert _revision(tmp_path / "ops.db") == head_revision()
    proc = smskit(tmp_path, "--database", "ops.db", "db", "upgrade")
    assert proc.stdout.strip() == f"sqlite:///ops.db: already at {head_revision()} (newest)"
    proc = smskit(tmp_path, "--database", "ops.db", "db", "check")
    assert (proc.returncode, proc.stdout.strip()) == (
        0, f"sqlite:///ops.db: at {head_revision()} (newest)")

    # An older schema: check says behind (exit 1), upgrade brings it to the newest.
    older = known_revisions()[-2]
    with sqlite3.connect(tmp_path / "ops.db") as conn:
        conn.execute("UPDATE smskit_alembic_version SET version_num = ?", (older,))
    proc = smskit(tmp_path, "--database", "ops.db", "db", "check")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"Error: sqlite:///ops.db is at {older}, the newest is "
                                   f"{head_revision()}: run `smskit db upgrade`")


def test_db_check_refuses_a_revision_it_does_not_know(tmp_path: Path) -> None:
    assert smskit(tmp_path, "--database", "new.db", "db", "upgrade").returncode == 0
    with sqlite3.connect(tmp_path / "new.db") as conn:
        conn.execute("UPDATE smskit_alembic_version SET version_num = '9999'")
    for command in ("check", "upgrade"):
        proc = smskit(tmp_path, "--database", "new.db", "db", command)
        assert proc.returncode == 1
        assert "9999" in proc.stderr and "newer smskit" in proc.stderr
    assert _revision(tmp_path / "new.db") == "9999"


def test_db_commands_need_a_sql_store(tmp_path: Path) -> None:
    proc = smskit(tmp_path, "--database", "memory://", "db", "check")
    assert proc.returncode == 1
    assert "smskit db works on SQL stores" in proc.stderr


@pytest.mark.skipif(not PG_URL, reason="set SMSKIT_TEST_POSTGRES_URL to run on PostgreSQL")
def test_postgres_urls_are_postgresql(tmp_path: Path) -> None:
    from smskit import SmsKit

    assert PG_URL is not None
    short = "postgres://" + PG_URL.split("://", 1)[1]
    proc = smskit(tmp_path, "--database", short, "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    proc = smskit(tmp_path, "--database", short, "db", "check", "--json")
    assert (proc.returncode, json.loads(proc.stdout)["up_to_date"]) == (0, True)
    kit = SmsKit(database_url=short, provider="loopback")
    try:
        outcome = kit.send("11987654321", "Oi")
        assert kit.get(outcome.message_id) is not None
    finally:
        kit.close()
