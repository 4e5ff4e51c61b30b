"""The worker loop: what ``smskit worker`` runs (or an Odoo cron calls once per tick).

Each cycle (:meth:`Worker.run_once`), in this order:

1. **reconcile** batches whose outcome is unknown (``ambiguous``, or ``claimed`` for longer
   than ``stale_after``: a worker died mid-send) *before* anything new is sent;
2. **schedules**: :func:`smskit.outreach.scheduler.run_due` materialises due occurrences;
3. **campaigns**: :meth:`smskit.outreach.campaigns.Campaigns.advance` starts due campaigns and
   stores the next pages of running ones (a bounded number per cycle);
4. **dispatch** every due ``outgoing`` message;
5. **poll statuses** of messages still ``sent`` long after they were sent (their delivery
   report may have been lost), a bounded page per cycle
   (:class:`smskit.outreach.polling.StatusPoller`);
6. **blacklist sync**: :func:`smskit.outreach.blacklist_sync.push_pending` pushes local blacklist
   changes to the gateway (retried with back-off until acknowledged);
7. **poll replies**, a safety net next to webhooks, every ``reply_poll_every`` seconds
   (every cycle when webhooks cannot reach us: no ``public_url``),
   :class:`smskit.outreach.polling.ReplyPoller`;
8. **balance**: every ``balance_check_interval`` when ``balance_low_threshold`` is set
   (:class:`smskit.outreach.balance.BalanceMonitor`: the ``balance_low`` hook once per crossing).

Steps 3 and 6 need a store with campaigns and the audited blacklist
(:class:`~smskit.store.outreach.OutreachStore`; the built-in ones are).

:meth:`Worker.run` repeats that every ``interval`` seconds. SIGTERM or SIGINT lets the cycle in
hand finish and then returns; a second signal exits at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from types import FrameType
from typing import Any, Callable, Dict, List, Optional, Sequence

import attrs

from smskit.errors import ConfigurationError, ValidationError
from smskit.kit import SmsKit
from smskit.models import State
from smskit.outbox import DispatchReport, ReconcileReport
from smskit.outreach import blacklist_sync, scheduler
from smskit.outreach.balance import BalanceMonitor, BalanceReading
from smskit.outreach.campaigns import Campaigns, CampaignStep, merge_steps
from smskit.outreach.polling import (
    POLL_OVERLAP,
    PollSettings,
    ReplyPoller,
    StatusPoller,
    StatusPollReport,
)
from smskit.store.outreach import OutreachStore

__all__ = ["POLL_OVERLAP", "Worker", "WorkerReport"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@attrs.define
class WorkerReport:
    """What one :meth:`Worker.run_once` did, per provider where it applies."""

    reconciled: Dict[str, ReconcileReport] = attrs.field(factory=dict)
    schedules: List[scheduler.ScheduleRun] = attrs.field(factory=list)
    dispatched: Dict[str, DispatchReport] = attrs.field(factory=dict)
    statuses: Dict[str, StatusPollReport] = attrs.field(factory=dict)
    replies: Dict[str, int] = attrs.field(factory=dict)
    repeated_replies: Dict[str, int] = attrs.field(factory=dict)
    campaigns: List[CampaignStep] = attrs.field(factory=list)
    blacklist: Dict[str, blacklist_sync.SyncReport] = attrs.field(factory=dict)
    balances: Dict[str, BalanceReading] = attrs.field(factory=dict)

    @property
    def sent(self) -> int:
        """Messages the providers accepted in this cycle."""
        return sum(r.sent for r in self.dispatched.values())

    @property
    def empty(self) -> bool:
        """Whether the cycle found nothing to do."""
        return not (
            any(r.batches for r in self.reconciled.values())
            or self.schedules
            or any(r.batches for r in self.dispatched.values())
            or any(r.changed or r.error for r in self.statuses.values())
            or any(self.replies.values())
            or any(step.chunks or step.started or step.finished or step.error
                   for step in self.campaigns)
            or any(r.busy for r in self.blacklist.values())
            or any(r.alerted for r in self.balances.values())
        )

    def describe(self) -> str:
        """One log line: the non-zero counts."""
        parts: List[str] = []
        for name, rec in sorted(self.reconciled.items()):
            if rec.batches:
                parts.append(f"{name}: reconciled {rec.batches} batch(es) ({rec.confirmed} "
                             f"confirmed, {rec.resendable} to resend, {rec.still_unknown} "
                             "unknown)")
        for run in self.schedules:
            state = "error: " + run.error if run.error else ("ran" if run.won else "lost race")
            parts.append(f"schedule {run.name} {run.occurrence.isoformat()} {state} "
                         f"({run.created} new, {run.skipped} skipped)")
        for step in self.campaigns:
            if step.chunks or step.started or step.finished or step.error:
                state = "started; " if step.started else ""
                state += f"{step.created} new, {step.duplicates} already stored"
                state += "; done" if step.finished else ""
                state += f"; error: {step.error}" if step.error else ""
                parts.append(f"campaign {step.name} {state}")
        for name, sent in sorted(self.dispatched.items()):
            if sent.batches:
                parts.append(f"{name}: {sent.sent} sent, {sent.rejected} rejected, "
                             f"{sent.canceled} canceled, {sent.released} released, "
                             f"{sent.ambiguous} ambiguous"
                             + (f", {sent.deferred} deferred" if sent.deferred else ""))
        for name, polled in sorted(self.statuses.items()):
            if polled.changed or polled.error:
                parts.append(f"{name}: status poll asked about {polled.asked}, {polled.changed} "
                             f"moved on ({polled.final} final)"
                             + (f", error: {polled.error}" if polled.error else ""))
        for name, count in sorted(self.replies.items()):
            if count:
                parts.append(f"{name}: {count} new repl{'y' if count == 1 else 'ies'}")
        for name, sync in sorted(self.blacklist.items()):
            if sync.busy:
                parts.append(f"{name}: blacklist sync {sync.acknowledged} acknowledged, "
                             f"{sync.failed} to retry, {sync.refused} refused, "
                             f"{sync.skipped} skipped")
        for name, reading in sorted(self.balances.items()):
            if reading.alerted:
                parts.append(f"{name}: balance {reading.balance} below {reading.threshold}")
        return "; ".join(parts) or "nothing to do"


class Worker:
    """Reconcile, run schedules, dispatch and poll statuses and replies, in a loop.

    ``poll_replies``: ``None`` polls each provider that can (``capabilities.reply_polling``)
    as the settings say (``reply_poll_every``, see :mod:`smskit.outreach.polling`); ``True``
    polls every cycle (a provider that cannot is a
    :class:`~smskit.errors.ConfigurationError`); ``False`` never. ``polling``: the polling
    settings (default: read from the kit's settings).
    ``providers`` defaults to :meth:`SmsKit.routed_providers <smskit.kit.SmsKit.routed_providers>`
    (the default provider, and with routing every provider the routes name, in that order:
    messages moved off a failing provider are sent in the same cycle). ``campaigns`` (default
    ``Campaigns(kit)``) runs the campaign step: pass one with ``sources=`` for audience
    sources configured by hand.
    ``balance`` defaults to :meth:`BalanceMonitor.from_settings`; ``sync_blacklist=False``
    leaves the gateway blacklist alone.
    """

    def __init__(
        self,
        kit: SmsKit,
        *,
        interval: float = 5.0,
        stale_after: dt.timedelta = dt.timedelta(minutes=5),
        poll_replies: Optional[bool] = None,
        providers: Optional[Sequence[str]] = None,
        catch_up: str = "latest",
        campaigns: Optional[Campaigns] = None,
        balance: Optional[BalanceMonitor] = None,
        sync_blacklist: bool = True,
        polling: Optional[PollSettings] = None,
    ) -> None:
        if not interval > 0:
            raise ValidationError(f"worker interval must be positive seconds, got {interval!r}")
        if catch_up not in scheduler.CATCH_UP_POLICIES:
            raise ValidationError(f"catch_up must be one of "
                                  f"{', '.join(scheduler.CATCH_UP_POLICIES)}, got {catch_up!r}")
        self.kit = kit
        self.interval = float(interval)
        self.stale_after = stale_after
        self.poll_replies = poll_replies
        self.catch_up = catch_up
        self._providers = tuple(providers) if providers else None
        self.campaigns = campaigns if campaigns is not None else Campaigns(kit)
        self.balance = balance if balance is not None else BalanceMonitor.from_settings(kit)
        self.sync_blacklist = sync_blacklist
        polling = polling if polling is not None else PollSettings.from_settings(kit.settings)
        self.status_poller = StatusPoller(kit, polling)
        self.reply_poller = ReplyPoller(kit, polling, force=poll_replies)
        self._stop = threading.Event()
        self._signals = 0

    @property
    def providers(self) -> Sequence[str]:
        """The provider names this worker serves."""
        if self._providers is None:
            self._providers = self.kit.routed_providers()
        return self._providers

    def run_once(self, now: Optional[dt.datetime] = None) -> WorkerReport:
        """One cycle: reconcile, schedules, campaigns, dispatch, blacklist sync, replies and
        balance (see the module docs). Returns the counts.

        ``now`` (default ``kit.clock()``) is the moment every step works at.
        """
        moment = now if now is not None else self.kit.clock()
        report = WorkerReport()
        for name in self.providers:
            report.reconciled[name] = self.kit.reconcile(provider=name, now=moment,
                                                         stale_after=self.stale_after)
        report.schedules = scheduler.run_due(self.kit, moment, catch_up=self.catch_up)
        outreach = isinstance(self.kit.store, OutreachStore)
        if outreach:
            report.campaigns = self.campaigns.advance(moment)
        for name in self.providers:
            report.dispatched[name] = self.kit.dispatch(provider=name, now=moment)
        for name in self.providers:
            polled = self.status_poller.run(name, moment)
            if polled is not None:
                report.statuses[name] = polled
        if outreach:
            report.campaigns = merge_steps(report.campaigns, self.campaigns.finish(moment))
        if outreach and self.sync_blacklist:
            for name in self.providers:
                report.blacklist[name] = blacklist_sync.push_pending(self.kit, name, moment)
        for name in self.providers:
            if self.reply_poller.due(name, moment):
                new, repeated = self.reply_poller.run(name, moment)
                report.replies[name] = new
                report.repeated_replies[name] = repeated
        if self.balance.enabled:
            for name in self.providers:
                reading = self.balance.check(name, moment)
                if reading is not None:
                    report.balances[name] = reading
        return report

    # -- the loop ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to return once the cycle in hand has finished (thread-safe)."""
        self._stop.set()

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.warning("%s again: exiting now", name)
            raise SystemExit(128 + signum)
        log.info("%s received: stopping after the current cycle", name)
        self._stop.set()

    def run(self, stop_event: Optional[threading.Event] = None) -> None:
        """Run cycles every ``interval`` seconds until stopped.

        Stops when ``stop_event`` (or :meth:`stop`) is set, or on SIGTERM/SIGINT (handlers are
        installed only in the main thread): the cycle in hand finishes first; a second signal
        exits at once. A failing cycle is logged and the loop goes on; a
        :class:`~smskit.errors.ConfigurationError` ends it (raised to the caller).
        """
        if stop_event is not None:
            self._stop = stop_event
        elif self._stop.is_set():  # left over from an earlier run
            self._stop = threading.Event()
        self._signals = 0
        previous: Dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            handler: Callable[[int, Optional[FrameType]], None] = self._on_signal
            for signum in _SIGNALS:
                previous[signum] = signal.signal(signum, handler)
        log.info("worker started (providers: %s, every %.1fs)", ", ".join(self.providers),
                 self.interval)
        self.warn_stranded()
        try:
            while not self._stop.is_set():
                self._cycle()
                self._stop.wait(self.interval)
        finally:
            for number, old in previous.items():
                signal.signal(number, old)
        log.info("worker stopped")

    def warn_stranded(self) -> Dict[str, int]:
        """Log (WARNING) the outgoing messages whose provider this configuration cannot
        build (removed from the settings since they were stored, its token gone...): no
        worker with these settings will send them. Returns ``{provider: count}``. Run once
        when :meth:`run` starts (one grouped count over the outbound messages);
        messages of a provider another worker serves are not counted."""
        try:
            counts = self.kit.store.count_by_state()
        except Exception:  # a store that cannot count: the cycles say what they can
            log.debug("could not count the outgoing messages per provider", exc_info=True)
            return {}
        served = set(self.providers)
        stranded: Dict[str, int] = {}
        for (name, state), count in counts.items():
            if state is not State.OUTGOING or not name or name in served or not count:
                continue
            try:
                self.kit.provider(name)
            except ConfigurationError as exc:
                stranded[name] = count
                log.warning("%d outgoing message(s) wait for provider %r, which this "
                            "configuration cannot send through (%s): they go out once it "
                            "can, or cancel them (smskit messages --state outgoing; smskit cancel)",
                            count, name, exc)
        return stranded

    def _cycle(self) -> None:
        try:
            report = self.run_once()
        except ConfigurationError:
            log.exception("worker configuration error; stopping")
            raise
        except Exception:  # one bad cycle must not stop the worker; the next one retries
            log.exception("worker cycle failed; retrying in %.1fs", self.interval)
            return
        if not report.empty:
            log.info("worker cycle: %s", report.describe())
