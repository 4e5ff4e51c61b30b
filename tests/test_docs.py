"""The code on docs/getting-started.md runs as written, and again on the same database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docs_blocks import python_blocks, run_python

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_getting_started_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SMSKIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    page = DOCS / "getting-started.md"
    assert len(python_blocks(page)) >= 4
    first = run_python(page)
    assert (tmp_path / "getting-started.db").exists()
    second = run_python(page)  # the database keeps the first run's messages and opt-out
    assert second["outcome"].message_id != first["outcome"].message_id
    assert second["summary"].sent == 2
