"""The store suite as pytest tests (this module needs pytest; :mod:`smskit.testing.stores`
does not).

Subclass :class:`StoreSuite` in a test module; pytest collects one ``test_<check>`` per check
of the suite::

    from smskit.testing.stores.suite import StoreSuite

    class TestMyStore(StoreSuite):
        def make_store(self):
            return MyStore("mystore://...")

A store that needs fixtures (a temporary directory, a server, several backends) overrides the
``store`` fixture instead, and closes what it made::

    class TestMyStore(StoreSuite):
        @pytest.fixture(params=["file", "server"])
        def store(self, request, tmp_path):
            made = MyStore.open(request.param, tmp_path)
            yield made
            made.close()

Checks of a part the store does not implement are skipped, with the reason; set ``parts``
to name the optional parts it implements (then a named part it lacks fails). At the end of
the run, the *smskit conformance* section of pytest's summary gives each store class's
:meth:`~smskit.testing.stores.runner.StoreReport.summary`, the same text
:func:`~smskit.testing.stores.check_store` reports: what passed, what failed and which parts
were skipped, and why (:mod:`smskit.testing.report`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import pytest

from smskit.testing.report import CheckResult, collector, suite_label
from smskit.testing.stores import StoreCheck, all_checks
from smskit.testing.stores.runner import CheckSkipped, StoreReport, run_check

__all__ = ["StoreSuite"]


class StoreSuite:
    """Mix into a pytest class; override :meth:`make_store` or the ``store`` fixture."""

    #: The optional parts (``outreach``, ``links``, ``stats``) the store implements;
    #: ``None`` detects them with ``isinstance`` on the public protocols.
    parts: Optional[Tuple[str, ...]] = None

    def make_store(self) -> Any:
        """Override: a new, empty store (the ``store`` fixture closes it after the test)."""
        raise NotImplementedError("override make_store() or the `store` fixture")

    @pytest.fixture
    def store(self) -> Iterator[Any]:
        """A fresh store from :meth:`make_store`, closed after the test."""
        made = self.make_store()
        yield made
        made.close()

    @pytest.fixture(autouse=True)
    def _smskit_store_report(self, request: pytest.FixtureRequest) -> None:
        """Count this test in the store's summary at the end of the run."""
        check = _CHECK_NAMES.get(request.function.__name__)
        if check is None:  # a test of the author's own, next to the suite's
            return
        label = suite_label(request)
        kind: Dict[str, str] = {}

        def summarise(results: Sequence[CheckResult]) -> str:
            store = kind.get("store", "a store that was never built")
            return StoreReport(store=f"{store} ({label})", results=tuple(results)).summary()

        collector(request.config).watch(request.node.nodeid, f"store suite {label}",
                                        check.name, check.parts, summarise)
        kind["store"] = type(request.getfixturevalue("store")).__name__


def _test_for(item: StoreCheck) -> Callable[[StoreSuite, Any], None]:
    def test(self: StoreSuite, store: Any) -> None:
        try:
            run_check(item, store, self.parts)
        except CheckSkipped as exc:
            pytest.skip(str(exc))

    test.__name__ = f"test_{item.name}"
    test.__qualname__ = f"StoreSuite.test_{item.name}"
    test.__doc__ = item.func.__doc__
    return test


_CHECK_NAMES: Dict[str, StoreCheck] = {}
for _item in all_checks():
    setattr(StoreSuite, f"test_{_item.name}", _test_for(_item))
    _CHECK_NAMES[f"test_{_item.name}"] = _item
