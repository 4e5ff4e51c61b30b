"""What the dashboard reads: short links, their clicks and the aggregates of a date range.

Optional store capabilities, checked with ``isinstance`` (both stores of smskit have them):

* :class:`LinkStore`: the ``links`` and ``link_clicks`` tables behind link tracking;
* :class:`ClickBatchStore`: :meth:`ClickBatchStore.record_clicks`, many clicks in one
  transaction (the server buffers clicks and writes them so; a store without it gets one
  :meth:`LinkStore.record_click` per click);
* :class:`StatsStore`: :meth:`StatsStore.dashboard_stats`, every figure of ``/dashboard`` and
  ``/api/stats`` from a fixed number of aggregate queries, whatever the number of messages.

Days are calendar days in the installation's time zone (``Settings.timezone``). The SQL store
groups on ``created_at`` shifted by a fixed UTC offset; :func:`offset_spans` cuts a range into
spans where that offset does not change (one span unless the range crosses a DST change), so
every query is a plain range scan on an indexed timestamp.
"""

from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.errors import ValidationError
from smskit.store.base import DayStats
from smskit.timeutil import zone

__all__ = [
    "CAMPAIGN_LIMIT",
    "OPTOUT_SOURCE_PREFIX",
    "USER_AGENT_MAX",
    "CampaignStats",
    "Click",
    "ClickBatchStore",
    "DayCount",
    "Link",
    "LinkClicks",
    "LinkStore",
    "StatsReport",
    "StatsStore",
    "Totals",
    "cost_text",
    "delivery_rate",
    "local_bounds",
    "local_day",
    "offset_spans",
]

#: Longest user agent kept with a click (the rest is cut).
USER_AGENT_MAX = 200
#: Blacklist entries whose ``source`` starts with this are opt-out replies
#: (:meth:`smskit.kit.SmsKit.receive` writes ``inbound:<provider>``).
OPTOUT_SOURCE_PREFIX = "inbound:"
#: Campaign rows the dashboard shows (the most recently active ones).
CAMPAIGN_LIMIT = 100

TzLike = Union[str, dt.tzinfo]


@attrs.frozen(kw_only=True)
class Link:
    """A short link: ``code`` stands for ``url`` in the body of message ``message_id``."""

    code: str
    url: str
    message_id: str
    campaign_id: Optional[str] = None
    created_at: dt.datetime


@attrs.frozen(kw_only=True)
class Click:
    """One click on a short link, waiting to be written (no IP address is ever kept)."""

    code: str
    at: dt.datetime
    user_agent: Optional[str] = None


@attrs.frozen(kw_only=True)
class DayCount:
    """A count for one local day (opt-outs, clicks)."""

    day: dt.date
    count: int


@attrs.frozen(kw_only=True)
class LinkClicks:
    """Clicks on one short link in the range (the dashboard's "most clicked" table)."""

    code: str
    url: str
    message_id: str
    campaign_id: Optional[str]
    clicks: int


@attrs.frozen(kw_only=True)
class CampaignStats:
    """One campaign's figures in the range: messages created then; replies, opt-outs and
    clicks that happened then.

    ``name`` comes from the campaigns table and ``opt_outs`` from the blacklist audit (additions
    from an opt-out reply, source ``inbound:...``) when the store has them (``None``/0
    otherwise). ``clicked_messages`` counts messages with at least
    one click (a person, not a repeated tap).
    """

    campaign_id: str
    name: Optional[str] = None
    messages: int
    sent: int
    delivered: int
    failed: int
    rejected: int
    canceled: int
    cost: Decimal
    replies: int = 0
    opt_outs: int = 0
    clicks: int = 0
    clicked_messages: int = 0

    @property
    def delivery_rate(self) -> Optional[float]:
        """``delivered / sent`` (``None`` before anything was sent)."""
        return delivery_rate(self.delivered, self.sent)


@attrs.frozen(kw_only=True)
class Totals:
    """The range's totals (over every provider)."""

    sent: int
    delivered: int
    failed: int
    rejected: int
    canceled: int
    cost: Decimal
    replies: int
    opt_outs: int
    clicks: int

    @property
    def delivery_rate(self) -> Optional[float]:
        """``delivered / sent`` (``None`` before anything was sent)."""
        return delivery_rate(self.delivered, self.sent)


@attrs.frozen(kw_only=True)
class StatsReport:
    """Everything the dashboard shows for the local days ``start``..``end`` in ``timezone``."""

    start: dt.date
    end: dt.date
    timezone: str
    days: Sequence[DayStats] = ()
    campaigns: Sequence[CampaignStats] = ()
    opt_outs: Sequence[DayCount] = ()
    clicks: Sequence[DayCount] = ()
    top_links: Sequence[LinkClicks] = ()

    @property
    def totals(self) -> Totals:
        """Sums over the days (replies are the inbound messages)."""
        return Totals(
            sent=sum(d.sent for d in self.days),
            delivered=sum(d.delivered for d in self.days),
            failed=sum(d.failed for d in self.days),
            rejected=sum(d.rejected for d in self.days),
            canceled=sum(d.canceled for d in self.days),
            cost=sum((d.cost for d in self.days), Decimal(0)),
            replies=sum(d.inbound for d in self.days),
            opt_outs=sum(d.count for d in self.opt_outs),
            clicks=sum(d.count for d in self.clicks),
        )

    def providers(self) -> List[DayStats]:
        """One row per provider summed over the range (``day`` is ``start``)."""
        merged: Dict[str, DayStats] = {}
        for d in self.days:
            old = merged.get(d.provider)
            if old is None:
                merged[d.provider] = attrs.evolve(d, day=self.start)
                continue
            merged[d.provider] = attrs.evolve(
                old, sent=old.sent + d.sent, delivered=old.delivered + d.delivered,
                failed=old.failed + d.failed, rejected=old.rejected + d.rejected,
                canceled=old.canceled + d.canceled, inbound=old.inbound + d.inbound,
                cost=old.cost + d.cost)
        return [merged[p] for p in sorted(merged)]

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form ``/api/stats`` answers (costs as exact decimal strings)."""
        totals = self.totals
        return {
            "range": {"start": self.start.isoformat(), "end": self.end.isoformat(),
                      "timezone": self.timezone},
            "totals": {
                "sent": totals.sent, "delivered": totals.delivered, "failed": totals.failed,
                "rejected": totals.rejected, "canceled": totals.canceled,
                "cost": cost_text(totals.cost), "delivery_rate": totals.delivery_rate,
                "replies": totals.replies, "opt_outs": totals.opt_outs,
                "clicks": totals.clicks,
            },
            "days": [_day_dict(d, "day") for d in self.days],
            "providers": [_day_dict(p, None) for p in self.providers()],
            "campaigns": [
                {"campaign_id": c.campaign_id, "name": c.name, "messages": c.messages,
                 "sent": c.sent, "delivered": c.delivered, "failed": c.failed,
                 "rejected": c.rejected, "canceled": c.canceled, "cost": cost_text(c.cost),
                 "delivery_rate": c.delivery_rate, "replies": c.replies,
                 "opt_outs": c.opt_outs, "clicks": c.clicks,
                 "clicked_messages": c.clicked_messages}
                for c in self.campaigns
            ],
            "opt_outs": [{"day": d.day.isoformat(), "count": d.count} for d in self.opt_outs],
            "clicks": [{"day": d.day.isoformat(), "count": d.count} for d in self.clicks],
            "top_links": [
                {"code": t.code, "url": t.url, "message_id": t.message_id,
                 "campaign_id": t.campaign_id, "clicks": t.clicks}
                for t in self.top_links
            ],
        }


def _day_dict(d: DayStats, day_key: Optional[str]) -> Dict[str, Any]:
    row: Dict[str, Any] = {} if day_key is None else {day_key: d.day.isoformat()}
    row.update({
        "provider": d.provider, "sent": d.sent, "delivered": d.delivered, "failed": d.failed,
        "rejected": d.rejected, "canceled": d.canceled, "cost": cost_text(d.cost),
        "delivery_rate": delivery_rate(d.delivered, d.sent), "replies": d.inbound,
    })
    return row


def cost_text(cost: Decimal) -> str:
    """An exact cost as text with at least two decimal places (``"0.40"``, ``"0.075"``).

    Trailing zeros beyond the cents go (``"0.0750"`` is ``"0.075"``), so the text depends on
    the amount only, not on how a price was written or which store summed it.
    """
    if cost.is_finite():  # enough precision that no digit is ever rounded away
        cost = cost.normalize(Context(prec=len(cost.as_tuple().digits) + 1))
    exponent = cost.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        cost = cost.quantize(Decimal("0.01"))
    return str(cost)


def delivery_rate(delivered: int, sent: int) -> Optional[float]:
    """``delivered / sent`` rounded to 4 places, ``None`` when nothing was sent."""
    return round(delivered / sent, 4) if sent else None


@runtime_checkable
class LinkStore(Protocol):
    """A store that keeps short links and their clicks."""

    def add_links(self, links: Sequence[Link]) -> List[str]:
        """Insert links in one transaction; the codes that were already taken (not inserted).

        A code is unique forever: the caller picks a new code for a taken one and tries again.
        """
        ...

    def discard_links(self, message_ids: Sequence[str]) -> int:
        """Delete the links (and clicks) of these messages; how many links went."""
        ...

    def get_link(self, code: str) -> Optional[Link]:
        """The link with this code, or ``None``."""
        ...

    def links_of(self, message_id: str) -> List[Link]:
        """The links of one message, by creation order."""
        ...

    def record_click(self, code: str, at: dt.datetime,
                     user_agent: Optional[str] = None) -> Optional[Link]:
        """Count a click on ``code`` (the user agent cut to 200 characters; no IP kept).

        Returns the link, or ``None`` for an unknown code (nothing is recorded then).
        """
        ...

    def click_count(self, code: str) -> int:
        """How many clicks ``code`` has had."""
        ...


@runtime_checkable
class ClickBatchStore(Protocol):
    """A store that writes many clicks at once."""

    def record_clicks(self, clicks: Sequence[Click]) -> int:
        """Count ``clicks`` in one transaction, as :meth:`LinkStore.record_click` counts one
        (user agents cut to 200 characters); a click on a code that does not exist (any more)
        is skipped. How many were recorded."""
        ...


@runtime_checkable
class StatsStore(Protocol):
    """A store that answers the dashboard's aggregates."""

    def dashboard_stats(self, start: dt.date, end: dt.date, tz: str = "America/Sao_Paulo",
                        *, top: int = 10) -> StatsReport:
        """Every figure of the local days ``start``..``end`` (inclusive) in time zone ``tz``.

        Outbound figures count messages *created* in the range; replies, opt-outs (blacklist
        entries from an opt-out reply) and clicks count what *happened* in the range.
        Campaigns are the 100 most recently active; ``top`` links by clicks.
        """
        ...

    def reroute_counts(self, start: Optional[dt.datetime] = None,
                       end: Optional[dt.datetime] = None) -> Dict[Tuple[str, str], int]:
        """Messages moved from one provider to another while theirs was down,
        ``{(from, to): count}``: the ``rerouted`` history events created in ``[start, end)``
        (aware datetimes; ``None``: that side open). For the metrics and the dashboard."""
        ...


# -- local days ----------------------------------------------------------------------------
def local_day(moment: dt.datetime, tz: TzLike) -> dt.date:
    """The calendar day of an aware ``moment`` in ``tz``."""
    return moment.astimezone(zone(tz)).date()


def local_bounds(start: Optional[dt.date], end: Optional[dt.date],
                 tz: TzLike) -> Tuple[Optional[dt.datetime], Optional[dt.datetime]]:
    """UTC bounds ``[start 00:00 local, end+1 00:00 local)`` (``None`` for an open side)."""
    if start is not None and end is not None and end < start:
        raise ValidationError(f"date range: end {end.isoformat()} is before start "
                              f"{start.isoformat()}")
    tzinfo = zone(tz)

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), tzinfo=tzinfo).astimezone(dt.timezone.utc)

    lo = midnight(start) if start is not None else None
    hi = midnight(end + dt.timedelta(days=1)) if end is not None else None
    return lo, hi


def _offset(tzinfo: dt.tzinfo, moment: dt.datetime) -> int:
    delta = moment.astimezone(tzinfo).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def offset_spans(lo: dt.datetime, hi: dt.datetime,
                 tz: TzLike) -> List[Tuple[dt.datetime, dt.datetime, int]]:
    """Cut ``[lo, hi)`` (aware) into spans with a constant UTC offset (seconds) in ``tz``.

    A local day is then ``date(created_at + offset)`` inside each span. Found by stepping an
    hour at a time and bisecting each change to the microsecond, so it is exact for any zone
    whose offset changes at most once an hour (all of them).
    """
    tzinfo = zone(tz)
    spans: List[Tuple[dt.datetime, dt.datetime, int]] = []
    if hi <= lo:
        return spans
    last = hi - dt.timedelta(microseconds=1)
    begin, current = lo, _offset(tzinfo, lo)
    probe = lo
    while probe < last:
        nxt = min(probe + dt.timedelta(hours=1), last)
        if _offset(tzinfo, nxt) == current:
            probe = nxt
            continue
        change = _first_change(tzinfo, probe, nxt, current)
        spans.append((begin, change, current))
        begin, current, probe = change, _offset(tzinfo, change), change
    spans.append((begin, hi, current))
    return spans


def _first_change(tzinfo: dt.tzinfo, a: dt.datetime, b: dt.datetime, offset: int) -> dt.datetime:
    """The first moment in ``(a, b]`` whose offset differs from ``offset`` (``b``'s does)."""
    low, high = 0, (b - a) // dt.timedelta(microseconds=1)
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(tzinfo, a + dt.timedelta(microseconds=mid)) == offset:
            low = mid
        else:
            high = mid
    return a + dt.timedelta(microseconds=high)


def group_days(moments: Iterable[Tuple[dt.datetime, int]], tz: TzLike) -> List[DayCount]:
    """Add up ``(moment, n)`` pairs per local day, oldest first (the memory store's way)."""
    tzinfo = zone(tz)
    counts: Dict[dt.date, int] = {}
    for moment, n in moments:
        day = moment.astimezone(tzinfo).date()
        counts[day] = counts.get(day, 0) + n
    return [DayCount(day=d, count=n) for d, n in sorted(counts.items())]
