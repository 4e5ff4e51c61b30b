"""Pushing the local blacklist to the gateways, and moving it in and out as CSV.

The local blacklist is authoritative. Every change made through :class:`smskit.SmsKit`
(``blacklist_add``/``blacklist_remove``, an opt-out keyword in a reply, an import) is written
with an audit line and one sync item per gateway in the same transaction
(:meth:`~smskit.store.outreach.OutreachStore.blacklist_change`). :func:`push_pending` (a step
of every worker cycle) sends pending items to the provider in queue order, up to 1000 numbers
per request, and marks them acknowledged once the gateway answered. A failure is counted on the
items and the provider is left alone until a back-off delay (30 s doubling up to 1 h) has
passed, so items are retried until acknowledged and never reordered. A number the gateway can
never take (a foreign number for Kolmeya) is marked ``refused`` with the reason; a provider
without a gateway blacklist marks its items ``skipped``.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import logging
from typing import IO, Any, Dict, Iterable, List, Mapping, Optional, Sequence

import attrs

from smskit.errors import SmsKitError, ValidationError
from smskit.kit import SmsKit
from smskit.phone import blacklist_e164
from smskit.provider import Provider
from smskit.store.outreach import BlacklistSyncItem, OutreachStore

__all__ = [
    "BATCH",
    "BlacklistImport",
    "SyncReport",
    "backoff",
    "export_blacklist",
    "import_blacklist",
    "push_pending",
]

log = logging.getLogger(__name__)

#: Numbers per gateway request (Kolmeya's limit).
BATCH = 1000
_FIRST_DELAY = dt.timedelta(seconds=30)
_MAX_DELAY = dt.timedelta(hours=1)
_HOLD_KEY = "blacklist_sync:{provider}:retry_at"


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failure: 30 s, 1 min, 2 min... at most 1 h."""
    delay: dt.timedelta = _FIRST_DELAY * (2 ** max(0, min(attempts - 1, 16)))
    return min(delay, _MAX_DELAY)


@attrs.define
class SyncReport:
    """What one :func:`push_pending` call did for one provider."""

    acknowledged: int = 0
    refused: int = 0
    skipped: int = 0
    failed: int = 0
    retry_at: Optional[dt.datetime] = None
    errors: List[str] = attrs.field(factory=list)

    @property
    def busy(self) -> bool:
        """Whether anything was attempted."""
        return bool(self.acknowledged or self.refused or self.skipped or self.failed)


def _push(provider: Provider, action: str, phones: Sequence[str]) -> None:
    if action == "add":
        provider.blacklist_add(phones)
    else:
        provider.blacklist_remove(phones)


def _runs(items: Sequence[BlacklistSyncItem]) -> List[List[BlacklistSyncItem]]:
    """Consecutive items of one action, at most :data:`BATCH` each (queue order kept)."""
    runs: List[List[BlacklistSyncItem]] = []
    for _, group in itertools.groupby(items, key=lambda i: i.action):
        batch = list(group)
        runs.extend(batch[i:i + BATCH] for i in range(0, len(batch), BATCH))
    return runs


def _failed(store: OutreachStore, provider: Provider, run: Sequence[BlacklistSyncItem],
            exc: SmsKitError, now: dt.datetime, report: SyncReport) -> None:
    """The gateway failed on ``run``: its items count an attempt and keep the error, and the
    provider is left alone until the back-off delay has passed."""
    attempts = max(i.attempts for i in run) + 1
    retry_at = now + backoff(attempts)
    store.retry_blacklist_sync([i.id for i in run], str(exc), retry_at)
    store.set_state(_HOLD_KEY.format(provider=provider.name), retry_at.isoformat())
    report.failed += len(run)
    report.retry_at = retry_at
    report.errors.append(str(exc))
    log.warning("blacklist sync to %s failed (attempt %d), retrying at %s: %s",
                provider.name, attempts, retry_at.isoformat(), exc)


def _one_by_one(store: OutreachStore, provider: Provider, run: Sequence[BlacklistSyncItem],
                now: dt.datetime, report: SyncReport) -> bool:
    """A request refused as invalid: find the numbers at fault (refused), push the others.
    ``False`` when the gateway failed on the way (the items not settled wait for a retry)."""
    for position, item in enumerate(run):
        try:
            _push(provider, item.action, [item.phone])
        except ValidationError as exc:
            store.finish_blacklist_sync([item.id], "refused", now, error=str(exc))
            report.refused += 1
            log.warning("blacklist sync: %s refused %s of %s: %s", provider.name, item.action,
                        item.phone, exc)
        except SmsKitError as exc:
            _failed(store, provider, run[position:], exc, now, report)
            return False
        else:
            store.finish_blacklist_sync([item.id], "acknowledged", now)
            report.acknowledged += 1
    return True


def push_pending(kit: SmsKit, provider_name: Optional[str] = None,
                 now: Optional[dt.datetime] = None, *, max_items: int = 10 * BATCH) -> SyncReport:
    """Push pending blacklist changes to one provider (default: the kit's), in queue order.

    Stops at the first failure (the items count an attempt, keep the error, and the provider
    waits :func:`backoff`); at most ``max_items`` per call.
    """
    report = SyncReport()
    store = kit.store
    if not isinstance(store, OutreachStore):
        return report
    provider = kit.provider(provider_name)
    moment = (now or kit.clock()).astimezone(dt.timezone.utc)
    hold_key = _HOLD_KEY.format(provider=provider.name)
    held = store.get_state(hold_key)
    if held and dt.datetime.fromisoformat(held) > moment:
        report.retry_at = dt.datetime.fromisoformat(held)
        return report
    done = 0
    while done < max_items:
        items = store.pending_blacklist_sync(provider.name, moment, limit=BATCH)
        if not items:
            break
        done += len(items)
        if not provider.capabilities.blacklist:
            store.finish_blacklist_sync([i.id for i in items], "skipped", moment,
                                        error=f"provider {provider.name!r} has no gateway "
                                              "blacklist")
            report.skipped += len(items)
            continue
        for run in _runs(items):
            try:
                _push(provider, run[0].action, [i.phone for i in run])
            except ValidationError:
                if not _one_by_one(store, provider, run, moment, report):
                    return report
            except SmsKitError as exc:
                _failed(store, provider, run, exc, moment, report)
                return report
            else:
                store.finish_blacklist_sync([i.id for i in run], "acknowledged", moment)
                report.acknowledged += len(run)
    return report


# -- CSV -------------------------------------------------------------------------------------------
_COLUMNS = ("phone", "reason", "source", "created_at")


def export_blacklist(kit: SmsKit, out: IO[str]) -> int:
    """Write the blacklist as CSV (``phone,reason,source,created_at``); how many rows."""
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    entries = kit.store.list_blacklist()
    for entry in entries:
        writer.writerow([entry.phone, entry.reason, entry.source, entry.created_at.isoformat()])
    return len(entries)


@attrs.define
class BlacklistImport:
    """What :func:`import_blacklist` did."""

    added: int = 0
    already: int = 0
    invalid: int = 0
    invalid_rows: List[Dict[str, Any]] = attrs.field(factory=list)


def import_blacklist(kit: SmsKit, rows: Iterable[Mapping[str, Any]], *, source: str,
                     phone_column: str = "phone", reason: str = "imported",
                     show_invalid: int = 20) -> BlacklistImport:
    """Add every row's number (audited as ``source``, queued for the gateways). A ``reason``
    column (as :func:`export_blacklist` writes) wins over ``reason``; bad rows are counted and
    listed, never aborting the import."""
    report = BlacklistImport()
    region = kit.settings.default_region
    for number, row in enumerate(rows, 1):
        raw = row.get(phone_column, "")
        try:
            phone = blacklist_e164(raw, region)
        except ValidationError as exc:
            report.invalid += 1
            if len(report.invalid_rows) < show_invalid:
                report.invalid_rows.append({"row": number, "phone": raw, "reason": str(exc)})
            continue
        why = str(row.get("reason") or reason)
        if kit.blacklist_add(phone, reason=why, source=source):
            report.added += 1
        else:
            report.already += 1
    return report
