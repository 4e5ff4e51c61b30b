"""The machinery of the store suite: named checks grouped in parts, how a check decides it
does not apply, and the report :func:`check_store` returns.

A check is a function taking a fresh, empty store and raising :class:`AssertionError` (through
:func:`expect` and friends) when a guarantee does not hold. It belongs to one or more *parts*:

* ``store``: the :class:`~smskit.store.base.Store` protocol, which every store implements;
* ``outreach``: :class:`~smskit.store.outreach.OutreachStore` (contacts, campaigns, the audited
  blacklist and its sync queue, key/value state);
* ``links``: :class:`~smskit.store.analytics.LinkStore` (short links and clicks);
* ``stats``: :class:`~smskit.store.analytics.StatsStore` (the dashboard's aggregates).

A check runs when its store implements every part it belongs to (``isinstance`` on the public
protocols), or, when the store's author names the parts, when all of them are named; a named
part the store does not implement is a failure, not a skip. The optional methods of
:class:`~smskit.store.base.Store` (``claim_batch_messages``, ``apply_statuses``, ``ping``) are
checked whether the store overrides them or inherits their defaults; the ``requeue_messages``
checks are skipped, with that reason, for a store that keeps its default (which moves nothing).

Results are :class:`~smskit.testing.report.CheckResult` values; under pytest
(:class:`~smskit.testing.stores.suite.StoreSuite`) the same :meth:`StoreReport.summary` ends
the run, in the *smskit conformance* section.
"""

from __future__ import annotations

import contextlib
import time
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
)

import attrs

from smskit.errors import ValidationError
from smskit.store.analytics import LinkStore, StatsStore
from smskit.store.base import ClaimingStore, Store
from smskit.store.outreach import OutreachStore
from smskit.testing.report import FAILED, PASSED, SKIPPED, CheckResult, counts

__all__ = [
    "PARTS",
    "CheckResult",
    "CheckSkipped",
    "StoreCheck",
    "StoreReport",
    "all_checks",
    "check",
    "check_store",
    "expect",
    "expect_equal",
    "expect_raises",
    "missing_methods",
    "skip_reason",
]

#: The parts of the suite and the protocol a store implements to have each.
PARTS: Dict[str, type] = {
    "store": Store,
    "outreach": OutreachStore,
    "links": LinkStore,
    "stats": StatsStore,
    "claiming": ClaimingStore,
}

_F = TypeVar("_F", bound=Callable[[Any], None])


class CheckSkipped(Exception):
    """Raised by a check that finds it does not apply to the store under test."""


@attrs.frozen
class StoreCheck:
    """One named guarantee: ``func(store)`` raises :class:`AssertionError` when it is broken."""

    name: str
    parts: Tuple[str, ...]
    func: Callable[[Any], None]

    @property
    def doc(self) -> str:
        """The first line of the check's docstring: the guarantee it proves."""
        return (self.func.__doc__ or self.name).strip().splitlines()[0]


_CHECKS: Dict[str, StoreCheck] = {}


def check(*parts: str) -> Callable[[_F], _F]:
    """Register the decorated function as a check of ``parts`` (default ``store``), named
    after the function."""
    wanted = parts or ("store",)
    for part in wanted:
        if part not in PARTS:
            raise ValidationError(f"unknown store suite part {part!r} (one of {', '.join(PARTS)})")

    def register(func: _F) -> _F:
        name = func.__name__
        if name in _CHECKS:
            raise ValidationError(f"store check {name!r} is registered twice")
        _CHECKS[name] = StoreCheck(name=name, parts=tuple(wanted), func=func)
        return func

    return register


def all_checks(parts: Optional[Iterable[str]] = None) -> List[StoreCheck]:
    """Every registered check in suite order, or only those whose parts are all in ``parts``."""
    if parts is None:
        return list(_CHECKS.values())
    chosen = set(parts) | {"store"}
    return [c for c in _CHECKS.values() if set(c.parts) <= chosen]


def missing_methods(store: object, part: str) -> List[str]:
    """The methods of ``part``'s protocol that ``store`` lacks (``[]`` when it has them all)."""
    protocol = PARTS[part]
    names: List[str] = []
    for klass in protocol.__mro__:
        if klass.__module__.startswith("smskit."):
            names.extend(n for n, v in vars(klass).items()
                         if callable(v) and not n.startswith("_"))
    return [n for n in dict.fromkeys(names) if not callable(getattr(store, n, None))]


def skip_reason(item: StoreCheck, store: object,
                declared: Optional[Iterable[str]] = None) -> Optional[str]:
    """Why ``item`` does not apply to ``store`` (``None``: run it).

    ``declared`` are the parts the store's author says it implements (``None``: detect them).
    A declared part the store lacks raises :class:`AssertionError` naming the missing methods.
    """
    chosen = None if declared is None else set(declared) | {"store"}
    for part in item.parts:
        if chosen is not None and part not in chosen:
            return f"the store does not declare the {part!r} part"
        if isinstance(store, PARTS[part]):
            continue
        missing = ", ".join(missing_methods(store, part)) or "a method"
        if chosen is not None or part == "store":
            raise AssertionError(f"the store lacks {missing} of the {part!r} part "
                                 f"({PARTS[part].__name__})")
        return f"does not implement {PARTS[part].__name__} (no {missing.split(', ')[0]})"
    return None


# -- assertions that survive ``python -O`` and say what they expected -----------------------
def expect(condition: object, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    """Fail the check unless ``actual == expected``, showing both."""
    if not actual == expected:
        raise AssertionError(f"{what}\n  expected: {expected!r}\n  got:      {actual!r}")


@contextlib.contextmanager
def expect_raises(error: Type[BaseException], what: str,
                  match: Optional[str] = None) -> Iterator[None]:
    """Fail the check unless the block raises ``error`` (whose text contains ``match``)."""
    try:
        yield
    except error as exc:
        if match is not None and match not in str(exc):
            raise AssertionError(f"{what}: {type(exc).__name__} should mention {match!r}, "
                                 f"got {exc}") from exc
        return
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


# -- running and reporting ------------------------------------------------------------------
@attrs.frozen
class StoreReport:
    """The outcome of :func:`check_store`: one result per check, in suite order."""

    store: str
    results: Tuple[CheckResult, ...]

    @property
    def passed(self) -> List[CheckResult]:
        """The checks that held."""
        return [r for r in self.results if r.status == PASSED]

    @property
    def failed(self) -> List[CheckResult]:
        """The checks that did not hold (a broken guarantee or an unexpected exception)."""
        return [r for r in self.results if r.status == FAILED]

    @property
    def skipped(self) -> List[CheckResult]:
        """The checks that do not apply to this store (a part or method it does not have)."""
        return [r for r in self.results if r.status == SKIPPED]

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped ones do not count against the store)."""
        return not self.failed

    def result(self, name: str) -> CheckResult:
        """The result of the check called ``name``."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    def summary(self) -> str:
        """A readable report: the counts, every failure with its reason, the skipped parts."""
        lines = [f"store suite on {self.store}: {counts(self.results)}"]
        for r in self.failed:
            detail = r.detail.replace("\n", "\n      ")
            lines.append(f"  FAILED {r.name} [{', '.join(r.parts)}]: {detail}")
        reasons: Dict[str, int] = {}
        for r in self.skipped:
            reasons[r.detail] = reasons.get(r.detail, 0) + 1
        for reason, count in reasons.items():
            lines.append(f"  skipped {count} check{'s' if count > 1 else ''}: {reason}")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`AssertionError` with :meth:`summary` when a check failed."""
        if self.failed:
            raise AssertionError(self.summary())


def run_check(item: StoreCheck, store: object,
              declared: Optional[Iterable[str]] = None) -> None:
    """Run one check on ``store``: raise :class:`CheckSkipped` when it does not apply, and
    let the check's :class:`AssertionError` through when it fails."""
    reason = skip_reason(item, store, declared)
    if reason is not None:
        raise CheckSkipped(reason)
    item.func(store)


def check_store(factory: Callable[[], Any], *, parts: Optional[Iterable[str]] = None,
                only: Optional[Sequence[str]] = None,
                close: Optional[Callable[[Any], None]] = None) -> StoreReport:
    """Run the store suite: each check on a fresh, empty store from ``factory()``.

    ``parts`` names the optional parts the store implements (``None``: detect them with
    ``isinstance``); ``only`` restricts the run to checks with these names. After each check
    the store is closed with ``close(store)`` (default: ``store.close()``). An exception from
    ``factory`` propagates; any exception from a check or from closing fails that check.
    """
    declared = None if parts is None else tuple(parts)
    if declared is not None:
        unknown = [p for p in declared if p not in PARTS]
        if unknown:
            raise ValidationError(f"unknown store suite part(s) {', '.join(unknown)} "
                                  f"(one of {', '.join(PARTS)})")
    chosen = all_checks()
    if only is not None:
        names = {c.name for c in chosen}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValidationError(f"no store check named {', '.join(unknown)}")
        chosen = [c for c in chosen if c.name in set(only)]
    results: List[CheckResult] = []
    label = ""
    for item in chosen:
        store = factory()
        label = label or type(store).__name__
        started = time.monotonic()
        status, detail = _outcome(item, store, declared, close)
        results.append(CheckResult(name=item.name, parts=item.parts, status=status,
                                   detail=detail, seconds=time.monotonic() - started))
    return StoreReport(store=label or "no store", results=tuple(results))


def _outcome(item: StoreCheck, store: Any, declared: Optional[Iterable[str]],
             close: Optional[Callable[[Any], None]]) -> Tuple[str, str]:
    status, detail = PASSED, ""
    try:
        run_check(item, store, declared)
    except CheckSkipped as exc:
        status, detail = SKIPPED, str(exc)
    except AssertionError as exc:
        status, detail = FAILED, str(exc) or "a guarantee does not hold"
    except Exception as exc:  # a store raising where it should not breaks the guarantee
        status, detail = FAILED, f"raised {type(exc).__name__}: {exc}"
    try:
        (close or _close)(store)
    except Exception as exc:  # a store that cannot be closed fails the check it served
        if status != FAILED:
            status, detail = FAILED, f"closing the store raised {type(exc).__name__}: {exc}"
    return status, detail


def _close(store: Any) -> None:
    store.close()
