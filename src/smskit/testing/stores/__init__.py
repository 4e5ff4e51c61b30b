"""The store conformance suite: every store runs it against its own factory.

It checks the guarantees :mod:`smskit.store.base` documents (idempotent adds, exclusive claims,
forward-only states, unique provider ids, replies once, schedules run once, exact money and
time, stats by aggregate queries) and, as optional parts, those of
:class:`~smskit.store.outreach.OutreachStore`, :class:`~smskit.store.analytics.LinkStore` and
:class:`~smskit.store.analytics.StatsStore`. Each check gets a fresh, empty store.

Plain Python (no pytest needed)::

    from smskit.testing.stores import check_store

    report = check_store(lambda: MyStore("mystore://..."))
    print(report.summary())      # "store suite on MyStore: 41 passed, 0 failed, 24 skipped"
    report.raise_if_failed()

With pytest, subclass :class:`smskit.testing.stores.suite.StoreSuite` (one test per check)::

    from smskit.testing.stores.suite import StoreSuite

    class TestMyStore(StoreSuite):
        def make_store(self):
            return MyStore("mystore://...")

The optional parts run when the store implements their protocol (``isinstance``), or, when
``parts`` is given, when the store's author names them; a skipped part is reported as such:
in :meth:`StoreReport.summary <smskit.testing.stores.runner.StoreReport.summary>`, and, under
pytest, in the same words at the end of the run (the *smskit conformance* section).
"""

from __future__ import annotations

# The check modules register their checks when imported: this order is the suite's order.
# isort: off
from smskit.testing.stores import messages as _messages  # noqa: F401
from smskit.testing.stores import events as _events  # noqa: F401
from smskit.testing.stores import outreach as _outreach  # noqa: F401
from smskit.testing.stores import analytics as _analytics  # noqa: F401
from smskit.testing.stores import routing as _routing  # noqa: F401
from smskit.testing.stores import claiming as _claiming  # noqa: F401
# isort: on
from smskit.testing.stores.runner import (
    PARTS,
    CheckResult,
    CheckSkipped,
    StoreCheck,
    StoreReport,
    all_checks,
    check_store,
)

__all__ = [
    "PARTS",
    "CheckResult",
    "CheckSkipped",
    "StoreCheck",
    "StoreReport",
    "all_checks",
    "check_store",
]
