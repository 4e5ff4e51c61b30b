"""How the conformance suites report: one :class:`CheckResult` per check, and, under pytest, a
section at the end of the run summarising each suite, skipped checks with their reasons.

A suite that skips what a plugin does not claim (a capability, an optional store part) passes
quietly by default in pytest: ``4 skipped`` says nothing of *what* went unchecked. So the
provider suite (:mod:`smskit.testing.conformance`) and the store suite
(:mod:`smskit.testing.stores.suite`) register every check they run with the collector below,
which pytest then asks for the terminal summary::

    ================== smskit conformance ==================
    provider conformance on acme (TestAcme): 15 passed, 0 failed, 2 skipped
      skipped job_control_pauses_and_plays [job_control]: Capabilities.job_control is False
      ...
    store suite on MyStore: 38 passed, 0 failed, 22 skipped
      skipped 15 checks: does not implement OutreachStore (no save_contacts)

Nothing needs configuring: the suites' own fixtures register the collector on first use.
This module does not import pytest (the plain :func:`smskit.testing.stores.check_store` uses
:class:`CheckResult` without it).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import attrs

__all__ = ["FAILED", "PASSED", "PLUGIN_NAME", "SKIPPED", "CheckResult", "SuiteCollector",
           "collector", "counts", "skip_reason_of", "suite_label"]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

#: The name the collector is registered under with pytest's plugin manager.
PLUGIN_NAME = "smskit-conformance-summary"


@attrs.frozen
class CheckResult:
    """How one check went: ``status`` is ``passed``, ``failed`` or ``skipped``; ``detail``
    says what broke or why it was skipped; ``parts`` are the store parts or provider
    capabilities the check is about."""

    name: str
    parts: Tuple[str, ...]
    status: str
    detail: str = ""
    seconds: float = 0.0


#: Builds a suite's summary text from its results (the title comes with it).
Summarise = Callable[[Sequence[CheckResult]], str]


@attrs.define
class _Suite:
    summarise: Summarise
    results: Dict[str, CheckResult] = attrs.field(factory=dict)


@attrs.define
class _Watched:
    suite: str
    check: str
    parts: Tuple[str, ...]
    status: str = PASSED
    detail: str = ""
    seconds: float = 0.0


def skip_reason_of(longrepr: Any) -> str:
    """The reason pytest keeps for a skip (``(file, line, "Skipped: why")``), without the
    prefix."""
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text[len("Skipped: "):] if text.startswith("Skipped: ") else text


def _failure_of(longrepr: Any) -> str:
    """The last line of the error pytest reports (the message, not the traceback)."""
    crash = getattr(getattr(longrepr, "reprcrash", None), "message", None)
    text = str(crash if crash is not None else longrepr).strip()
    return text.replace("AssertionError: ", "", 1) if text.startswith("AssertionError") else text


class SuiteCollector:
    """A pytest plugin: the outcome of every watched test, grouped by suite, written at the
    end of the run under *smskit conformance*. Get it with :func:`collector`."""

    def __init__(self) -> None:
        self._suites: Dict[str, _Suite] = {}
        self._watched: Dict[str, _Watched] = {}

    def watch(self, nodeid: str, suite: str, check: str, parts: Tuple[str, ...],
              summarise: Summarise) -> None:
        """Count the test ``nodeid`` as ``check`` of ``suite`` (a title such as ``store suite
        on MyStore``) whose summary ``summarise`` writes."""
        self._suites.setdefault(suite, _Suite(summarise))
        self._watched.setdefault(nodeid, _Watched(suite, check, parts))

    def results(self, suite: str) -> List[CheckResult]:
        """The results recorded so far for ``suite``, in the order the checks ran."""
        found = self._suites.get(suite)
        return list(found.results.values()) if found is not None else []

    def pytest_runtest_logreport(self, report: Any) -> None:
        """pytest hook: fold each phase of a watched test into its result."""
        watched = self._watched.get(report.nodeid)
        if watched is None:
            return
        watched.seconds += float(getattr(report, "duration", 0.0))
        if report.skipped and watched.status == PASSED:
            watched.status, watched.detail = SKIPPED, skip_reason_of(report.longrepr)
        elif report.failed and watched.status != FAILED:
            where = "" if report.when == "call" else f"(in {report.when}) "
            watched.status, watched.detail = FAILED, where + _failure_of(report.longrepr)
        if report.when == "teardown":
            suite = self._suites[watched.suite]
            suite.results[report.nodeid] = CheckResult(
                name=watched.check, parts=watched.parts, status=watched.status,
                detail=watched.detail, seconds=watched.seconds)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """pytest hook: one paragraph per suite that ran."""
        suites = [(title, s) for title, s in self._suites.items() if s.results]
        if not suites:
            return
        terminalreporter.section("smskit conformance")
        for _title, suite in suites:
            for line in suite.summarise(list(suite.results.values())).splitlines():
                terminalreporter.write_line(line)


def collector(config: Any) -> SuiteCollector:
    """The collector registered with pytest's ``config`` (registered on first use)."""
    found: Optional[SuiteCollector] = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if found is None:
        found = SuiteCollector()
        config.pluginmanager.register(found, PLUGIN_NAME)
    return found


def suite_label(request: Any) -> str:
    """The test class of a pytest ``request``, with the parameter id when its fixtures are
    parametrised (``TestStores[sqlite]``): the runs of one class on one backend."""
    label = request.cls.__qualname__ if request.cls is not None else request.node.name
    callspec = getattr(request.node, "callspec", None)
    return f"{label}[{callspec.id}]" if callspec is not None else label


def counts(results: Sequence[CheckResult]) -> str:
    """``"12 passed, 0 failed, 3 skipped"``."""
    tally = {status: sum(1 for r in results if r.status == status)
             for status in (PASSED, FAILED, SKIPPED)}
    return f"{tally[PASSED]} passed, {tally[FAILED]} failed, {tally[SKIPPED]} skipped"
