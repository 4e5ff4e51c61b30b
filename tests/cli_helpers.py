"""Shared by the tests that drive the `smskit` command through click's runner on a loopback
provider and a SQLite file in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest
from click.testing import CliRunner


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """A clean SMSKIT_* environment: loopback provider, a SQLite file in ``tmp_path``."""
    for key in list(os.environ):
        if key.startswith("SMSKIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    values = {"SMSKIT_PROVIDER": "loopback",
              "SMSKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def cli(*args: str) -> Any:
    """Run ``smskit ARGS`` in-process (stderr kept apart where click allows it)."""
    from smskit.cli import build_cli

    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()
    return runner.invoke(build_cli(), list(args), catch_exceptions=False)
