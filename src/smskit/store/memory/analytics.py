"""The memory store's short links, clicks and dashboard aggregates (plain loops, one lock)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from smskit.errors import ValidationError
from smskit.models import Direction, Message, State
from smskit.store import rules as c
from smskit.store.analytics import (
    CAMPAIGN_LIMIT,
    OPTOUT_SOURCE_PREFIX,
    USER_AGENT_MAX,
    CampaignStats,
    Click,
    Link,
    LinkClicks,
    StatsReport,
    group_days,
    local_bounds,
)
from smskit.store.base import BlacklistEntry, DayStats
from smskit.timeutil import zone

__all__ = ["MemoryAnalyticsMixin"]


@attrs.frozen
class _Click:
    code: str
    clicked_at: dt.datetime
    user_agent: Optional[str]


class MemoryAnalyticsMixin:
    """Links, clicks and :meth:`dashboard_stats` of :class:`smskit.store.memory.store.MemoryStore`.

    The store sets ``_links`` and ``_clicks`` in its ``__init__``, next to its own dicts.
    """

    _lock: threading.RLock
    _messages: Dict[str, Message]
    _blacklist: Dict[str, BlacklistEntry]
    _links: Dict[str, Link]
    _clicks: List[_Click]

    # -- links ------------------------------------------------------------------------------
    def add_links(self, links: Sequence[Link]) -> List[str]:
        """Insert links; the codes already taken by another message (not inserted)."""
        taken: List[str] = []
        with self._lock:
            for link in links:
                c.require_utc(link.created_at, "link created_at")
                stored = self._links.setdefault(link.code, link)
                if stored.message_id != link.message_id:
                    taken.append(link.code)
        return taken

    def discard_links(self, message_ids: Sequence[str]) -> int:
        """Delete the links (and clicks) of these messages; how many links went."""
        wanted = set(message_ids)
        with self._lock:
            gone = {code for code, link in self._links.items() if link.message_id in wanted}
            for code in gone:
                del self._links[code]
            self._clicks = [k for k in self._clicks if k.code not in gone]
        return len(gone)

    def get_link(self, code: str) -> Optional[Link]:
        """The link with this code, or ``None``."""
        with self._lock:
            return self._links.get(code)

    def links_of(self, message_id: str) -> List[Link]:
        """The links of one message, by creation order."""
        with self._lock:
            found = [link for link in self._links.values() if link.message_id == message_id]
        return sorted(found, key=lambda link: (link.created_at, link.code))

    def record_click(self, code: str, at: dt.datetime,
                     user_agent: Optional[str] = None) -> Optional[Link]:
        """Count a click on a known code (``None``, nothing recorded, for an unknown one)."""
        at = c.require_utc(at, "at")
        with self._lock:
            link = self._links.get(code)
            if link is not None:
                agent = user_agent[:USER_AGENT_MAX] if user_agent else None
                self._clicks.append(_Click(code, at, agent))
            return link

    def record_clicks(self, clicks: Sequence[Click]) -> int:
        """Count many clicks at once; those on unknown codes are skipped."""
        stamped = [(k, c.require_utc(k.at, "at")) for k in clicks]
        recorded = 0
        with self._lock:
            for click, at in stamped:
                if click.code in self._links:
                    agent = click.user_agent[:USER_AGENT_MAX] if click.user_agent else None
                    self._clicks.append(_Click(click.code, at, agent))
                    recorded += 1
        return recorded

    def click_count(self, code: str) -> int:
        """How many clicks ``code`` has had."""
        with self._lock:
            return sum(1 for k in self._clicks if k.code == code)

    # -- aggregates -------------------------------------------------------------------------
    def stats_by_day(self, start: Optional[dt.date] = None, end: Optional[dt.date] = None,
                     *, tz: Optional[str] = None) -> List[DayStats]:
        """Per local day of creation (``tz``, default UTC) and provider, oldest day first.

        ``cost`` adds up the messages the provider accepted (``sent`` or later).
        """
        tzinfo = zone(tz) if tz else dt.timezone.utc
        rows: Dict[Tuple[dt.date, str], Dict[str, Any]] = {}
        with self._lock:
            messages = list(self._messages.values())
        for m in messages:
            day = m.created_at.astimezone(tzinfo).date()
            if (start is not None and day < start) or (end is not None and day > end):
                continue
            row = rows.setdefault((day, m.provider or ""), _empty_row())
            if m.direction is Direction.INBOUND:
                row["inbound"] += 1
                continue
            _count(row, m)
        return [DayStats(day=day, provider=provider, **row)
                for (day, provider), row in sorted(rows.items())]

    def dashboard_stats(self, start: dt.date, end: dt.date, tz: str = "America/Sao_Paulo",
                        *, top: int = 10) -> StatsReport:
        """Every figure of the local days ``start``..``end`` in ``tz`` (see StatsStore)."""
        lo, hi = local_bounds(start, end, tz)
        if lo is None or hi is None:
            raise ValidationError("dashboard_stats needs both a start and an end day")
        days = self.stats_by_day(start, end, tz=tz)
        with self._lock:
            messages = list(self._messages.values())
            links = dict(self._links)
            clicks = [k for k in self._clicks if lo <= k.clicked_at < hi]
            optouts = [e.created_at for e in self._blacklist.values()
                       if e.source.startswith(OPTOUT_SOURCE_PREFIX) and lo <= e.created_at < hi]
        by_id = {m.id: m for m in messages}
        campaigns: Dict[str, Dict[str, Any]] = {}
        latest: Dict[str, dt.datetime] = {}
        for m in messages:
            if not (lo <= m.created_at < hi):
                continue
            if m.direction is Direction.OUTBOUND and m.campaign_id:
                row = campaigns.setdefault(m.campaign_id, dict(_empty_row(), messages=0))
                row["messages"] += 1
                _count(row, m)
                latest[m.campaign_id] = max(latest.get(m.campaign_id, m.created_at),
                                            m.created_at)
        extra: Dict[str, Dict[str, Any]] = {}
        for m in messages:
            if m.direction is Direction.INBOUND and m.in_reply_to and lo <= m.created_at < hi:
                origin = by_id.get(m.in_reply_to)
                if origin is not None and origin.campaign_id:
                    _extra(extra, origin.campaign_id)["replies"] += 1
        per_link: Dict[str, int] = {}
        for k in clicks:
            per_link[k.code] = per_link.get(k.code, 0) + 1
            link = links.get(k.code)
            if link is not None and link.campaign_id:
                row = _extra(extra, link.campaign_id)
                row["clicks"] += 1
                row["clicked"].add(link.message_id)
        named = getattr(self, "_campaigns", None) or {}  # the outreach part, when present
        for entry in list(getattr(self, "_audit", None) or ()):
            cid = getattr(entry, "campaign_id", None)
            source = str(getattr(entry, "source", ""))
            if (cid and getattr(entry, "action", None) == "add" and lo <= entry.created_at < hi
                    and source.startswith(OPTOUT_SOURCE_PREFIX)):
                _extra(extra, cid)["opt_outs"] += 1
        table = [
            CampaignStats(campaign_id=cid, name=getattr(named.get(cid), "name", None),
                          replies=extra.get(cid, {}).get("replies", 0),
                          opt_outs=extra.get(cid, {}).get("opt_outs", 0),
                          clicks=extra.get(cid, {}).get("clicks", 0),
                          clicked_messages=len(extra.get(cid, {}).get("clicked", ())),
                          **{k: v for k, v in row.items() if k != "inbound"})
            for cid, row in campaigns.items()
        ]
        table.sort(key=lambda s: (latest[s.campaign_id], s.campaign_id), reverse=True)
        ranked = sorted(per_link.items(), key=lambda item: (-item[1], item[0]))[:max(top, 0)]
        top_links = [
            LinkClicks(code=code, url=links[code].url, message_id=links[code].message_id,
                       campaign_id=links[code].campaign_id, clicks=n)
            for code, n in ranked if code in links
        ]
        return StatsReport(
            start=start, end=end, timezone=tz, days=days, campaigns=table[:CAMPAIGN_LIMIT],
            opt_outs=group_days(((t, 1) for t in optouts), tz),
            clicks=group_days(((k.clicked_at, 1) for k in clicks), tz),
            top_links=top_links,
        )


def _empty_row() -> Dict[str, Any]:
    return {"sent": 0, "delivered": 0, "failed": 0, "rejected": 0, "canceled": 0, "inbound": 0,
            "cost": Decimal(0)}


def _count(row: Dict[str, Any], m: Message) -> None:
    """Add one outbound message to a stats row (the rules of ``Store.stats_by_day``)."""
    accepted = m.state in c.SENT_OR_LATER
    row["sent"] += accepted
    row["delivered"] += m.state is State.DELIVERED
    row["failed"] += m.state in c.FAILED
    row["rejected"] += m.state is State.REJECTED
    row["canceled"] += m.state is State.CANCELED
    if accepted and m.cost is not None:
        row["cost"] += m.cost


def _extra(extra: Dict[str, Dict[str, Any]], campaign_id: str) -> Dict[str, Any]:
    return extra.setdefault(campaign_id, {"replies": 0, "opt_outs": 0, "clicks": 0,
                                          "clicked": set()})

