"""The shipped store suite itself: it catches broken stores by the name of the guarantee they
break, skips the parts a store does not have, and reports it readably, with or without pytest.

(The suite's own run over the built-in stores is in test_store.py and test_odoo_store_suite.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List

import attrs
import pytest

from smskit.errors import ValidationError
from smskit.models import Message, StatusEvent
from smskit.store.base import AddOutcome, ApplyOutcome, Store
from smskit.store.memory import MemoryStore
from smskit.testing.stores import StoreReport, all_checks, check_store
from smskit.testing.stores.runner import missing_methods
from smskit.testing.stores.suite import StoreSuite

FORWARD_ONLY = "status_events_move_forward_only_and_are_all_kept"
BACKWARDS = "backwards_event_is_ignored_but_recorded"
IDEMPOTENT = "idempotency_key_returns_the_stored_message"


class BackwardsStore(MemoryStore):
    """Broken: a status event that should be ignored moves the message anyway."""

    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        outcome = super().apply_status(event)
        if outcome.applied or outcome.message is None:
            return outcome
        forced = attrs.evolve(outcome.message, state=event.state)
        with self._lock:
            self._messages[forced.id] = forced
        return ApplyOutcome(message=forced, applied=True, old=outcome.old, new=event.state,
                            reason="applied")


class ForgetfulStore(MemoryStore):
    """Broken: add_messages ignores idempotency keys (a double click sends twice)."""

    def add_messages(self, messages: Iterable[Message]) -> List[AddOutcome]:
        return super().add_messages([attrs.evolve(m, idempotency_key=None) for m in messages])


class CoreOnlyStore:
    """A correct store with the Store protocol only (no outreach, links or stats)."""

    def __init__(self) -> None:
        self.inner = MemoryStore()


def _forward(name: str) -> Callable[..., Any]:
    def method(self: CoreOnlyStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in missing_methods(object(), "store"):
    setattr(CoreOnlyStore, _name, _forward(_name))


def test_a_healthy_store_passes_every_check_including_the_inherited_defaults() -> None:
    # MemoryStore inherits Store's defaults for claim_batch_messages and ping: the suite
    # checks those defaults like any override.
    report = check_store(MemoryStore)
    assert report.ok and report.failed == [] and report.skipped == []
    assert len(report.results) == len(all_checks())
    summary = report.summary()
    assert summary.splitlines()[0] == (
        f"store suite on MemoryStore: {len(all_checks())} passed, 0 failed, 0 skipped")
    report.raise_if_failed()


def test_a_store_moving_states_backwards_fails_the_forward_only_checks() -> None:
    report = check_store(BackwardsStore)
    failed = {r.name for r in report.failed}
    assert {FORWARD_ONLY, BACKWARDS} <= failed
    assert IDEMPOTENT not in failed
    detail = report.result(BACKWARDS).detail
    assert "a backwards event is not applied" in detail and "backwards (sent -> outgoing)" in detail
    assert not report.ok
    assert f"FAILED {FORWARD_ONLY} [store]: a repeated, late or backwards event" in (
        report.summary())
    with pytest.raises(AssertionError, match=BACKWARDS):
        report.raise_if_failed()


def test_a_store_without_idempotency_fails_the_idempotency_checks() -> None:
    report = check_store(ForgetfulStore)
    failed = {r.name for r in report.failed}
    assert {IDEMPOTENT, "idempotency_key_twice_in_one_call_stores_one",
            "concurrent_adds_with_one_idempotency_key_store_one"} <= failed
    assert FORWARD_ONLY not in failed
    assert "a repeated idempotency key must give created=False" in report.result(IDEMPOTENT).detail


def test_the_pytest_form_fails_the_named_test() -> None:
    class TestBroken(StoreSuite):
        def make_store(self) -> Store:
            return BackwardsStore()

    suite = TestBroken()
    with pytest.raises(AssertionError, match="a backwards event is not applied"):
        getattr(suite, f"test_{BACKWARDS}")(suite.make_store())
    getattr(suite, f"test_{IDEMPOTENT}")(suite.make_store())  # what it does not break, passes
    with pytest.raises(pytest.skip.Exception, match="does not implement OutreachStore"):
        suite.test_key_value_state_is_shared(CoreOnlyStore())  # type: ignore[attr-defined]
    assert {f"test_{c.name}" for c in all_checks()} <= set(dir(StoreSuite))


_COLLECTED = """
from smskit.store.memory import MemoryStore
from smskit.testing.stores.suite import StoreSuite
from test_store_suite import BackwardsStore, CoreOnlyStore


class TestCoreOnly(StoreSuite):
    def make_store(self):
        return CoreOnlyStore()


class TestBroken(StoreSuite):
    def make_store(self):
        return BackwardsStore()


class TestHealthy(StoreSuite):
    parts = ("outreach", "links", "stats", "claiming")

    def make_store(self):
        return MemoryStore()
"""


def test_pytest_collects_one_test_per_check(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(_COLLECTED, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs",
         str(tmp_path / "test_mine.py")],
        capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path, env=env)
    out = done.stdout
    assert done.returncode == 1, out
    failed = sorted(re.findall(r"FAILED \S*::TestBroken::test_(\w+)", out))
    assert failed == sorted([BACKWARDS, FORWARD_ONLY, "concurrent_status_events_stay_monotonic",
                             "apply_statuses_equals_applying_one_by_one"]), out
    assert "TestHealthy::" not in out  # -q names only the tests that failed
    total = len(all_checks())
    core = len(all_checks(["store"]))
    assert f"{len(failed)} failed, {2 * total + core - len(failed)} passed, " \
           f"{total - core} skipped in" in out
    # The end of the run says what check_store() says, per test class.
    section = out.split("= smskit conformance =", 1)[1].split("\n=")[0].strip("=\n ")
    plain = check_store(CoreOnlyStore).summary().replace(
        "on CoreOnlyStore:", "on CoreOnlyStore (TestCoreOnly):")
    assert plain in section, section
    assert f"store suite on MemoryStore (TestHealthy): {total} passed, 0 failed, 0 skipped" \
        in section
    assert (f"store suite on BackwardsStore (TestBroken): {total - len(failed)} passed, "
            f"{len(failed)} failed, 0 skipped") in section
    assert f"  FAILED {BACKWARDS} [store]: a backwards event is not applied" in section


def test_parts_a_store_lacks_are_skipped_unless_it_claims_them() -> None:
    detected = check_store(CoreOnlyStore)
    assert detected.ok
    assert {r.name for r in detected.passed} == {c.name for c in all_checks(["store"])}
    skipped = {r.name: r.detail for r in detected.skipped}
    assert skipped["key_value_state_is_shared"] == (
        "does not implement OutreachStore (no save_contacts)")
    assert skipped["dashboard_stats_on_a_seeded_store"] == (
        "does not implement StatsStore (no dashboard_stats)")
    assert skipped["link_codes_are_unique_and_clicks_counted"] == (
        "does not implement LinkStore (no add_links)")

    claimed = check_store(CoreOnlyStore, parts=["outreach"])
    failed = {r.name: r.detail for r in claimed.failed}
    assert set(failed) == {c.name for c in all_checks(["outreach"])
                           if "outreach" in c.parts and set(c.parts) <= {"store", "outreach"}}
    assert failed["key_value_state_is_shared"].startswith("the store lacks save_contacts, ")
    assert failed["key_value_state_is_shared"].endswith(" of the 'outreach' part (OutreachStore)")
    assert claimed.result("link_codes_are_unique_and_clicks_counted").detail == (
        "the store does not declare the 'links' part")


class _Exploding(MemoryStore):
    def get_many(self, message_ids: Any) -> List[Message]:
        raise TypeError("boom")


def test_an_unexpected_exception_fails_the_check_with_its_type() -> None:
    report = check_store(_Exploding, only=["get_many_find_and_list", "blacklist"])
    assert report.result("get_many_find_and_list").detail == "raised TypeError: boom"
    assert report.result("blacklist").status == "passed"


def test_closing_is_the_callers_choice_and_a_failing_close_fails() -> None:
    closed: List[Store] = []
    report = check_store(MemoryStore, only=["blacklist"], close=closed.append)
    assert [r.status for r in report.results] == ["passed"] and len(closed) == 1

    def refuse(store: Store) -> None:
        raise RuntimeError("journal not empty")

    refused = check_store(MemoryStore, only=["blacklist"], close=refuse)
    assert refused.result("blacklist").detail == (
        "closing the store raised RuntimeError: journal not empty")


def test_bad_arguments_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="flying"):
        check_store(MemoryStore, parts=["flying"])
    with pytest.raises(ValidationError, match="no store check named nope"):
        check_store(MemoryStore, only=["nope"])

    def no_store() -> Store:
        raise RuntimeError("cannot connect")

    with pytest.raises(RuntimeError, match="cannot connect"):
        check_store(no_store)


def test_the_report_is_a_value() -> None:
    report = check_store(CoreOnlyStore, only=["blacklist", "key_value_state_is_shared"])
    assert isinstance(report, StoreReport)
    assert [(r.name, r.status) for r in report.results] == [
        ("blacklist", "passed"), ("key_value_state_is_shared", "skipped")]
    with pytest.raises(KeyError):
        report.result("nope")


def test_the_plain_suite_does_not_import_pytest() -> None:
    code = ("import sys, smskit.testing, smskit.testing.stores\n"
            "from smskit.store import MemoryStore\n"
            "report = smskit.testing.stores.check_store(MemoryStore, only=['blacklist'])\n"
            "assert report.ok, report.summary()\n"
            "print('pytest' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_summaries_shown_in_the_docs_are_the_suites() -> None:
    # docs/stores.md shows both summaries for a store with the Store protocol only: they are
    # what the suite reports for such a store (counts included), pytest's with its title.
    from docs_blocks import blocks

    page = Path(__file__).resolve().parents[1] / "docs" / "stores.md"
    samples = [b.text for b in blocks(page) if b.lang == "text" and "store suite on" in b.text]
    plain, pytest_form = samples
    core = check_store(CoreOnlyStore).summary().splitlines()
    skips = [line for line in core if line.startswith("  skipped")]
    assert [line for line in plain.splitlines() if line.startswith("  skipped")] == skips
    passed, failed, skipped = map(int, re.findall(r"(\d+) \w+", plain.splitlines()[0]))
    core_skipped = len(check_store(CoreOnlyStore).skipped)
    assert (passed + failed, skipped) == (len(all_checks()) - core_skipped, core_skipped)
    shown = [line for line in pytest_form.splitlines() if line.startswith(("store", "  "))]
    assert shown == [core[0].replace("on CoreOnlyStore:", "on MyStore (TestMyStore[file]):"),
                     *core[1:]]

