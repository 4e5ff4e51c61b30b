"""Safety nets for callbacks that never arrive: status polling and reply polling.

Webhooks get lost (a server down for a minute, a proxy, the gateway's own retries giving up).
The worker does not wait for them for ever:

* **statuses** (:class:`StatusPoller`): a message still ``sent`` ``status_poll_after`` seconds
  (default 900) after it was sent has its status asked of the gateway, in pages of at most
  ``status_poll_limit`` messages per worker cycle (default 1000): one pass over every such
  message, then the next pass ``status_poll_every`` seconds later (default 300; ``0`` turns
  status polling off). The answers go through :meth:`smskit.SmsKit.apply_statuses`, the same
  forward-only rules as webhooks; an answer that moves nothing is not recorded. A provider
  with ``capabilities.status_polling`` is asked many messages at a time
  (:meth:`~smskit.provider.Provider.poll_statuses`); one with only ``status_query`` one message
  at a time, at most :data:`ONE_BY_ONE_LIMIT` a cycle.
* **replies** (:class:`ReplyPoller`): every ``reply_poll_every`` seconds (default 300; ``0``
  turns it off) the worker fetches the replies of each provider that can
  (``capabilities.reply_polling``), webhooks or not; the store records each reply id once,
  so a reply that came by webhook too is not stored (nor routed) twice. Without
  ``public_url`` (webhooks cannot reach us) and no ``reply_poll_every`` set, it polls every
  cycle: polling is then the only way in.

Each worker process keeps its own pass and poll times in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError, ProviderError
from smskit.models import Message, StatusEvent

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = [
    "ONE_BY_ONE_LIMIT",
    "POLL_OVERLAP",
    "PollSettings",
    "ReplyPoller",
    "StatusPollReport",
    "StatusPoller",
]

log = logging.getLogger(__name__)

#: Each reply poll reaches this far before the previous poll started: a reply the gateway
#: timestamps late, or a small clock difference, is not missed (repeats are de-duplicated by
#: the store on the provider's reply id).
POLL_OVERLAP = dt.timedelta(minutes=1)
#: The most messages asked about one at a time (``message_status``) in a worker cycle.
ONE_BY_ONE_LIMIT = 100


@attrs.frozen(kw_only=True)
class PollSettings:
    """When the worker polls (see the module docs); ``None`` turns a poll off."""

    status_after: dt.timedelta = dt.timedelta(seconds=900)
    status_every: Optional[dt.timedelta] = dt.timedelta(seconds=300)
    status_limit: int = 1000
    #: ``None``: off; zero: every cycle.
    reply_every: Optional[dt.timedelta] = dt.timedelta(seconds=300)

    @classmethod
    def from_settings(cls, settings: Settings) -> PollSettings:
        """``status_poll_after``, ``status_poll_every``, ``status_poll_limit`` and
        ``reply_poll_every`` (seconds); a bad value is a
        :class:`~smskit.errors.ConfigurationError`."""
        every = settings.number("status_poll_every", 300)
        raw_limit = (settings.get("status_poll_limit") or "1000").strip()
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise ConfigurationError(f"status_poll_limit must be a positive integer, got "
                                     f"{raw_limit!r}")
        default_reply = 300.0 if settings.public_url else 0.0
        reply = settings.number("reply_poll_every", default_reply)
        explicit_reply = (settings.get("reply_poll_every") or "").strip() != ""
        return cls(status_after=dt.timedelta(seconds=settings.number("status_poll_after", 900)),
                   status_every=dt.timedelta(seconds=every) if every > 0 else None,
                   status_limit=int(raw_limit),
                   reply_every=(None if explicit_reply and reply == 0
                                else dt.timedelta(seconds=reply)))


@attrs.define
class StatusPollReport:
    """What one status poll of one provider did: messages asked about, statuses that moved
    one on, of which final; ``done``: the pass over every waiting message ended."""

    asked: int = 0
    changed: int = 0
    final: int = 0
    done: bool = False
    error: Optional[str] = None


@attrs.define
class _Pass:
    cursor: Optional[Tuple[dt.datetime, str]] = None
    next_at: Optional[dt.datetime] = None


class StatusPoller:
    """Status polling for one worker (see the module docs)."""

    def __init__(self, kit: SmsKit, settings: Optional[PollSettings] = None) -> None:
        self.kit = kit
        self.settings = settings if settings is not None else PollSettings.from_settings(
            kit.settings)
        self._passes: Dict[str, _Pass] = {}

    @property
    def enabled(self) -> bool:
        """Whether status polling is on."""
        return self.settings.status_every is not None

    def run(self, name: str, now: dt.datetime) -> Optional[StatusPollReport]:
        """Ask the gateway of ``name`` about the next page of messages waiting for a status;
        ``None`` when it cannot be asked, or the next pass is not due."""
        every = self.settings.status_every
        provider = self.kit.provider(name)
        caps = provider.capabilities
        if every is None or not (caps.status_polling or caps.status_query):
            return None
        state = self._passes.setdefault(name, _Pass())
        if state.cursor is None and state.next_at is not None and now < state.next_at:
            return None
        limit = self.settings.status_limit if caps.status_polling else ONE_BY_ONE_LIMIT
        page = self.kit.store.awaiting_status(name, now - self.settings.status_after,
                                              after=state.cursor, limit=limit)
        report = StatusPollReport(asked=len(page))
        if len(page) < limit:  # the pass is over; the next one starts a while later
            state.cursor, state.next_at, report.done = None, now + every, True
        else:
            last = page[-1]
            state.cursor = (last.sent_at or now, last.id)
        if page:
            try:
                events = self._ask(name, page)
            except ProviderError as exc:
                log.warning("status poll of %s failed: %s", name, exc)
                report.error = str(exc)
                return report
            self._apply(page, events, report)
        return report

    def _ask(self, name: str, page: List[Message]) -> List[StatusEvent]:
        provider = self.kit.provider(name)
        if provider.capabilities.status_polling:
            return provider.poll_statuses(page)
        events = []
        for message in page:
            if not message.provider_message_id:
                continue
            try:
                event = provider.message_status(message.provider_message_id)
            except ProviderError as exc:  # this one is asked about again next pass
                log.debug("status of %s not read: %s", message.id, exc)
                continue
            events.append(attrs.evolve(event, message_id=message.id))
        return events

    def _apply(self, page: List[Message], events: List[StatusEvent],
               report: StatusPollReport) -> None:
        """Apply the events that move a message on (an unchanged status is not recorded)."""
        current = {m.id: m.state for m in page}
        moving = [e for e in events
                  if e.message_id in current and current[e.message_id].can_move_to(e.state)]
        if not moving:
            return
        for outcome in self.kit.apply_statuses(moving):
            if outcome.applied:
                report.changed += 1
                report.final += 1 if outcome.new is not None and outcome.new.is_final else 0


class ReplyPoller:
    """Reply polling for one worker (see the module docs); ``force``: ``True`` polls each
    provider every cycle and refuses one that cannot, ``False`` never polls."""

    def __init__(self, kit: SmsKit, settings: Optional[PollSettings] = None, *,
                 force: Optional[bool] = None) -> None:
        self.kit = kit
        self.settings = settings if settings is not None else PollSettings.from_settings(
            kit.settings)
        self.force = force
        self._last: Dict[str, dt.datetime] = {}

    def due(self, name: str, now: dt.datetime) -> bool:
        """Whether the replies of ``name`` are to be fetched now."""
        can = self.kit.provider(name).capabilities.reply_polling
        if self.force is False:
            return False
        if self.force:
            if not can:
                raise ConfigurationError(f"provider {name!r} cannot poll for replies; "
                                         "configure its reply webhook instead")
            return True
        every = self.settings.reply_every
        if not can or every is None:
            return False
        last = self._last.get(name)
        return last is None or now - last >= every or now < last

    def run(self, name: str, now: dt.datetime) -> Tuple[int, int]:
        """Fetch and record the replies of ``name``: (new, repeated)."""
        since = self._last.get(name)
        replies = self.kit.provider(name).poll_replies(
            since=since - POLL_OVERLAP if since is not None else None)
        new = repeated = 0
        for inbound in replies:
            if self.kit.receive(inbound).created:
                new += 1
            else:
                repeated += 1
        # Only after every reply is stored: a failure above polls the same window again.
        self._last[name] = now
        return new, repeated
