"""Steps 6 and 7 of the send pipeline (:mod:`smskit.outbox`), and why they cannot send twice.

6. :func:`dispatch`: claim due messages in provider-sized batches, check the blacklist once
   more, send, record each result forward only;
7. a failure where the request may have arrived (timeout, reset, 5xx) marks the batch
   ``ambiguous``; :func:`reconcile` asks the gateway about it by our batch reference and only a
   request the gateway never saw is sent again. A worker restarted after a crash reconciles
   stale ``claimed`` batches the same way before it sends anything new.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable, List, Optional, Sequence, Tuple

import attrs

from smskit.errors import ProviderError, RateLimitedError, RequestRejectedError
from smskit.ids import new_id
from smskit.models import Message, SendResult, State, StatusEvent
from smskit.provider import Provider
from smskit.store.base import BatchInfo, Store

__all__ = ["DispatchReport", "ReconcileReport", "dispatch", "reconcile"]

log = logging.getLogger(__name__)

# Default wait before a batch that sent nothing is tried again (the gateway's Retry-After wins).
RETRY_DELAY = dt.timedelta(seconds=30)


@attrs.define
class DispatchReport:
    """What one :func:`dispatch` call did."""

    batches: int = 0
    sent: int = 0
    rejected: int = 0
    canceled: int = 0
    released: int = 0
    ambiguous: int = 0
    retry_at: Optional[dt.datetime] = None
    errors: List[str] = attrs.field(factory=list)


@attrs.define
class ReconcileReport:
    """What one :func:`reconcile` call did."""

    batches: int = 0
    confirmed: int = 0
    resendable: int = 0
    still_unknown: int = 0


def _notify_sent(on_sent: Optional[Callable[[Message], None]], store: Store,
                 results: Sequence[SendResult]) -> None:
    if on_sent is None:
        return
    sent_ids = [r.message_id for r in results if r.state is State.SENT]
    for message in store.get_many(sent_ids):
        on_sent(message)


def _notify_opted_out(on_opted_out: Optional[Callable[[Message, SendResult], None]],
                      messages: Sequence[Message], results: Sequence[SendResult]) -> None:
    if on_opted_out is None:
        return
    by_id = {m.id: m for m in messages}
    for result in results:
        if result.opted_out and result.message_id in by_id:
            on_opted_out(by_id[result.message_id], result)


def dispatch(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    max_batches: Optional[int] = None,
    on_sent: Optional[Callable[[Message], None]] = None,
    on_opted_out: Optional[Callable[[Message, SendResult], None]] = None,
) -> DispatchReport:
    """Send due ``outgoing`` messages in batches of ``provider.max_batch`` until none is due.

    Stops early when the gateway is unavailable (the batch goes back to the queue, due at
    ``report.retry_at``) or the outcome of a request is unknown (the batch is left for
    :func:`reconcile`). ``on_opted_out`` hears of each message the gateway refused because its
    recipient opted out (:attr:`SendResult.opted_out`).
    """
    report = DispatchReport()
    while max_batches is None or report.batches < max_batches:
        claimed = _claim(store, provider, now)
        if claimed is None:
            break
        batch, messages = claimed
        report.batches += 1
        # The blacklist is checked again at the last moment: an opt-out that arrived after the
        # message was queued (a scheduled send, a deferred one) still wins.
        blocked = store.blacklisted([m.phone for m in messages])
        canceled = [SendResult(message_id=m.id, state=State.CANCELED, error_code="blacklisted",
                               error_text="number is on the blacklist")
                    for m in messages if m.phone in blocked]
        to_send = [m for m in messages if m.phone not in blocked]
        try:
            results = provider.send_batch(to_send, batch_id=batch.id) if to_send else []
        except RequestRejectedError as exc:
            # The gateway refused the request as a whole: nothing went out, and sending the
            # same request again would be refused again.
            rejected = [SendResult(message_id=m.id, state=State.REJECTED, error_code="request",
                                   error_text=str(exc)) for m in to_send]
            store.record_results(batch.id, canceled + rejected, now)
            report.rejected += len(rejected)
            report.canceled += len(canceled)
            report.errors.append(str(exc))
            continue
        except ProviderError as exc:
            report.errors.append(str(exc))
            if exc.sent_nothing:
                retry_at = now + _retry_delay(exc)
                if canceled:
                    store.record_results(batch.id, canceled, now)
                store.release_batch(batch.id, str(exc), retry_at=retry_at)
                report.released += len(to_send)
                report.retry_at = retry_at
            else:
                store.mark_batch_ambiguous(batch.id, str(exc))
                report.ambiguous += len(to_send)
            log.warning("dispatch of batch %s stopped: %s", batch.id, exc)
            break
        except Exception as exc:
            # Unknown failure inside the provider: the request may have gone out.
            store.mark_batch_ambiguous(batch.id, f"provider raised an unexpected error: {exc!r}")
            raise
        store.record_results(batch.id, canceled + list(results), now)
        report.sent += sum(1 for r in results if r.state is State.SENT)
        report.rejected += sum(1 for r in results if r.state is State.REJECTED)
        report.canceled += len(canceled)
        _notify_sent(on_sent, store, results)
        _notify_opted_out(on_opted_out, to_send, results)
    return report


def _claim(
    store: Store, provider: Provider, now: dt.datetime
) -> Optional[Tuple[BatchInfo, List[Message]]]:
    """Claim a batch and read its messages (in one transaction when the store can: see
    :meth:`~smskit.store.base.Store.claim_batch_messages`)."""
    return store.claim_batch_messages(provider.name, provider.max_batch, now, new_id())


def _retry_delay(exc: ProviderError) -> dt.timedelta:
    if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
        return dt.timedelta(seconds=max(0.0, exc.retry_after))
    return RETRY_DELAY


def reconcile(
    store: Store,
    provider: Provider,
    *,
    now: dt.datetime,
    stale_after: dt.timedelta = dt.timedelta(minutes=5),
    on_sent: Optional[Callable[[Message], None]] = None,
    on_status: Optional[Callable[[StatusEvent], object]] = None,
) -> ReconcileReport:
    """Settle batches whose outcome is unknown: ``ambiguous`` ones, and ``claimed`` ones older
    than ``stale_after`` (a worker died mid-send).

    Messages the gateway knows become ``sent`` (or ``rejected``); a request it never saw, and
    messages of a known request it has no trace of, go back to the queue to be sent. Status
    events the gateway reports on the way are handed to ``on_status``.
    """
    report = ReconcileReport()
    stale = store.batches(status="claimed", older_than=now - stale_after)
    for batch in store.batches(status="ambiguous") + stale:
        report.batches += 1
        messages = [m for m in store.get_many(batch.message_ids) if m.state is State.OUTGOING]
        if not messages:
            store.record_results(batch.id, [], now)
            continue
        try:
            answer = provider.reconcile(batch.id, messages)
        except ProviderError as exc:
            if batch.status == "claimed":
                store.mark_batch_ambiguous(batch.id, str(exc))
            report.still_unknown += len(messages)
            log.warning("reconciliation of batch %s failed: %s", batch.id, exc)
            continue
        if not answer.known:
            store.release_batch(batch.id, "the gateway never received this request")
            report.resendable += len(messages)
            continue
        wanted = {m.id for m in messages}
        results = [r for r in answer.results if r.message_id in wanted]
        store.record_results(batch.id, results, now)
        report.confirmed += len(results)
        missing = wanted - {r.message_id for r in results}
        if missing:
            store.release_batch(batch.id, "the gateway has no trace of these messages")
            report.resendable += len(missing)
        _notify_sent(on_sent, store, results)
        if on_status is not None:
            for event in answer.statuses:
                on_status(event)
    return report
