"""The SQL store's short links, clicks and dashboard aggregates.

Every figure is a ``GROUP BY`` over a range of an indexed timestamp (``messages.created_at``,
``link_clicks.clicked_at``); a local day is ``created_at`` shifted by the zone's UTC offset,
one statement per span of constant offset (:func:`~smskit.store.analytics.offset_spans`). So
the number of statements depends on the date range, never on the number of messages.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from smskit.errors import ValidationError
from smskit.models import Direction, State
from smskit.store import rules as c
from smskit.store.analytics import (
    CAMPAIGN_LIMIT,
    OPTOUT_SOURCE_PREFIX,
    USER_AGENT_MAX,
    CampaignStats,
    Click,
    DayCount,
    Link,
    LinkClicks,
    StatsReport,
    local_bounds,
    offset_spans,
)
from smskit.store.base import DayStats
from smskit.store.sql.driver import SqlBase, chunks
from smskit.store.sql.tables import blacklist, link_clicks, links, messages, metadata

__all__ = ["SqlAnalyticsMixin"]

_m = messages.c
_l = links.c
_k = link_clicks.c

_ONE: sa.ColumnElement[Any] = sa.literal_column("1")
_ZERO: sa.ColumnElement[Any] = sa.literal_column("0")


def _day(pg: bool, column: sa.ColumnElement[Any], offset: int) -> sa.ColumnElement[Any]:
    """The local date of a UTC ``column`` at a fixed ``offset`` (seconds), as SQL.

    ``offset`` is an int from the time zone database, rendered literally so the ``GROUP BY``
    expression is the same text as the selected one. On SQLite the stored text is cut to the
    whole second first: its date functions round ``23:59:59.9996`` up to the next second, and
    so to the next day.
    """
    offset = int(offset)
    if pg:
        utc = sa.func.timezone(sa.literal_column("'UTC'"), column)
        shift = sa.literal_column(f"INTERVAL '{offset} seconds'", sa.Interval())
        return sa.cast(utc + shift, sa.Date)
    seconds = sa.func.substr(column, 1, 19)  # "YYYY-MM-DD HH:MM:SS" of SQLAlchemy's format
    return sa.func.date(seconds, sa.literal_column(f"'{offset:+d} seconds'"))


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _link(row: Any) -> Link:
    return Link(code=row["code"], url=row["url"], message_id=row["message_id"],
                campaign_id=row["campaign_id"], created_at=row["created_at"])


class SqlAnalyticsMixin(SqlBase):
    """Links, clicks, :meth:`stats_by_day` and :meth:`dashboard_stats` of the SQL store."""

    # -- links ------------------------------------------------------------------------------
    def add_links(self, links_: Sequence[Link]) -> List[str]:
        """Insert links in one transaction; the codes already taken (those are not inserted).

        A code stored for the same message is not "taken" (a repeated call is a no-op).
        """
        firsts: Dict[str, Link] = {}
        taken: List[str] = []
        for link in links_:
            first = firsts.setdefault(link.code, link)
            if first.message_id != link.message_id:
                taken.append(link.code)
        if not firsts:
            return taken
        rows = [{"code": k.code, "url": k.url, "message_id": k.message_id,
                 "campaign_id": k.campaign_id, "created_at": k.created_at}
                for k in firsts.values()]
        with self._tx("add_links", write=True) as conn:
            conn.execute(self._insert_ignore(links), rows)
            for chunk in chunks(list(firsts)):
                query = sa.select(_l.code, _l.message_id).where(_l.code.in_(chunk))
                for code, message_id in conn.execute(query):
                    if message_id != firsts[code].message_id:
                        taken.append(code)
        return taken

    def discard_links(self, message_ids: Sequence[str]) -> int:
        """Delete the links (and clicks) of these messages; how many links went."""
        gone = 0
        with self._tx("discard_links", write=True) as conn:
            for chunk in chunks(list(dict.fromkeys(message_ids))):
                codes = sa.select(_l.code).where(_l.message_id.in_(chunk)).scalar_subquery()
                conn.execute(sa.delete(link_clicks).where(_k.code.in_(codes)))
                done = conn.execute(sa.delete(links).where(_l.message_id.in_(chunk))
                                    .execution_options(preserve_rowcount=True))
                gone += int(done.rowcount or 0)
        return gone

    def get_link(self, code: str) -> Optional[Link]:
        """The link with this code, or ``None``."""
        with self._tx("get_link") as conn:
            row = conn.execute(sa.select(links).where(_l.code == code)).mappings().first()
            return _link(row) if row is not None else None

    def links_of(self, message_id: str) -> List[Link]:
        """The links of one message, by creation order."""
        query = sa.select(links).where(_l.message_id == message_id).order_by(
            _l.created_at, _l.code)
        with self._tx("links_of") as conn:
            return [_link(r) for r in conn.execute(query).mappings()]

    def record_click(self, code: str, at: dt.datetime,
                     user_agent: Optional[str] = None) -> Optional[Link]:
        """Count a click on a known code (``None``, nothing recorded, for an unknown one)."""
        at = c.require_utc(at, "at")
        agent = user_agent[:USER_AGENT_MAX] if user_agent else None
        with self._tx("record_click", write=True) as conn:
            row = conn.execute(sa.select(links).where(_l.code == code)).mappings().first()
            if row is None:
                return None
            conn.execute(sa.insert(link_clicks).values(
                code=code, message_id=row["message_id"], campaign_id=row["campaign_id"],
                clicked_at=at, user_agent=agent))
            return _link(row)

    def record_clicks(self, clicks: Sequence[Click]) -> int:
        """Count many clicks in one transaction: the links in one ``IN`` look-up per 500 codes,
        the clicks in one INSERT; those on unknown codes are skipped."""
        rows: List[Dict[str, Any]] = []
        stamped = [(k, c.require_utc(k.at, "at")) for k in clicks]
        if not stamped:
            return 0
        with self._tx("record_clicks", write=True) as conn:
            known: Dict[str, Any] = {}
            for chunk in chunks(sorted({k.code for k, _ in stamped})):
                query = sa.select(_l.code, _l.message_id, _l.campaign_id).where(
                    _l.code.in_(chunk))
                known.update((code, (mid, cid)) for code, mid, cid in conn.execute(query))
            for click, at in stamped:
                if click.code not in known:
                    continue
                message_id, campaign_id = known[click.code]
                agent = click.user_agent[:USER_AGENT_MAX] if click.user_agent else None
                rows.append({"code": click.code, "message_id": message_id,
                             "campaign_id": campaign_id, "clicked_at": at,
                             "user_agent": agent})
            if rows:
                conn.execute(sa.insert(link_clicks), rows)
        return len(rows)

    def click_count(self, code: str) -> int:
        """How many clicks ``code`` has had."""
        with self._tx("click_count") as conn:
            query = sa.select(sa.func.count()).select_from(link_clicks).where(_k.code == code)
            return int(conn.execute(query).scalar() or 0)

    # -- aggregates -------------------------------------------------------------------------
    def _spans(self, conn: Connection, lo: Optional[dt.datetime], hi: Optional[dt.datetime],
               tz: Optional[str]) -> List[Tuple[Optional[dt.datetime], Optional[dt.datetime],
                                                int]]:
        """The constant-offset spans of ``[lo, hi)``; an open side is bounded by the data."""
        if not tz or tz.upper() == "UTC":
            return [(lo, hi, 0)]
        if lo is None or hi is None:
            query = sa.select(sa.func.min(_m.created_at), sa.func.max(_m.created_at))
            if lo is not None:
                query = query.where(_m.created_at >= lo)
            if hi is not None:
                query = query.where(_m.created_at < hi)
            first, last = conn.execute(query).one()
            if first is None:
                return []
            lo = lo or first
            hi = hi or last + dt.timedelta(microseconds=1)
        return [(a, b, off) for a, b, off in offset_spans(lo, hi, tz)]

    def _day_rows(self, conn: Connection, lo: Optional[dt.datetime],
                  hi: Optional[dt.datetime], tz: Optional[str]) -> List[DayStats]:
        outbound = _m.direction == Direction.OUTBOUND.value

        def hit(*states: State) -> sa.ColumnElement[bool]:
            return sa.and_(outbound, _m.state.in_([s.value for s in states]))

        def count(*states: State) -> sa.ColumnElement[Any]:
            return sa.func.sum(sa.case((hit(*states), _ONE), else_=_ZERO))

        inbound = sa.func.sum(sa.case((_m.direction == Direction.INBOUND.value, _ONE),
                                      else_=_ZERO))
        merged: Dict[Tuple[dt.date, str], DayStats] = {}
        for a, b, offset in self._spans(conn, lo, hi, tz):
            day = _day(self._pg, _m.created_at, offset)
            query = (
                sa.select(day, _m.provider, count(*c.SENT_OR_LATER), count(State.DELIVERED),
                          count(*c.FAILED), count(State.REJECTED), count(State.CANCELED),
                          inbound, sa.func.sum(sa.case((hit(*c.SENT_OR_LATER), _m.cost))))
                .group_by(day, _m.provider)
            )
            if a is not None:
                query = query.where(_m.created_at >= a)
            if b is not None:
                query = query.where(_m.created_at < b)
            for d, p, sent, dlv, failed, rej, canc, inb, cost in conn.execute(query).all():
                row = DayStats(day=_as_date(d), provider=p or "", sent=int(sent),
                               delivered=int(dlv), failed=int(failed), rejected=int(rej),
                               canceled=int(canc), inbound=int(inb),
                               cost=cost if cost is not None else Decimal(0))
                key = (row.day, row.provider)
                old = merged.get(key)
                merged[key] = row if old is None else _add_days(old, row)
        return [merged[k] for k in sorted(merged)]

    def stats_by_day(self, start: Optional[dt.date] = None, end: Optional[dt.date] = None,
                     *, tz: Optional[str] = None) -> List[DayStats]:
        """Per local day of creation (``tz``, default UTC) and provider, by aggregate queries.

        ``cost`` adds up the messages the provider accepted (``sent`` or later).
        """
        if tz and tz.upper() != "UTC":
            lo, hi = local_bounds(start, end, tz)
        else:
            lo, hi = c.day_range(start, end)
        with self._tx("stats_by_day") as conn:
            return self._day_rows(conn, lo, hi, tz)

    def _per_day(self, conn: Connection, column: sa.ColumnElement[Any], lo: dt.datetime,
                 hi: dt.datetime, tz: str,
                 build: Callable[[sa.ColumnElement[Any]], sa.Select[Any]]) -> List[DayCount]:
        counts: Dict[dt.date, int] = {}
        for a, b, offset in offset_spans(lo, hi, tz):
            day = _day(self._pg, column, offset)
            query = build(day).where(column >= a, column < b).group_by(day)
            for d, n in conn.execute(query):
                key = _as_date(d)
                counts[key] = counts.get(key, 0) + int(n)
        return [DayCount(day=d, count=n) for d, n in sorted(counts.items())]

    def dashboard_stats(self, start: dt.date, end: dt.date, tz: str = "America/Sao_Paulo",
                        *, top: int = 10) -> StatsReport:
        """Every figure of the local days ``start``..``end`` in ``tz``, in one read
        transaction of a fixed number of aggregate statements (see ``StatsStore``)."""
        lo, hi = local_bounds(start, end, tz)
        if lo is None or hi is None:
            raise ValidationError("dashboard_stats needs both a start and an end day")
        with self._tx("dashboard_stats") as conn:
            days = self._day_rows(conn, lo, hi, tz)
            campaigns = self._campaigns(conn, lo, hi)
            optouts = self._per_day(
                conn, blacklist.c.created_at, lo, hi, tz,
                lambda day: sa.select(day, sa.func.count()).where(
                    blacklist.c.source.like(f"{OPTOUT_SOURCE_PREFIX}%")))
            clicks = self._per_day(conn, _k.clicked_at, lo, hi, tz,
                                   lambda day: sa.select(day, sa.func.count()))
            top_links = self._top_links(conn, lo, hi, top)
        return StatsReport(start=start, end=end, timezone=tz, days=days, campaigns=campaigns,
                           opt_outs=optouts, clicks=clicks, top_links=top_links)

    def _campaigns(self, conn: Connection, lo: dt.datetime,
                   hi: dt.datetime) -> List[CampaignStats]:
        def count(*states: State) -> sa.ColumnElement[Any]:
            return sa.func.sum(sa.case((_m.state.in_([s.value for s in states]), _ONE),
                                       else_=_ZERO))

        accepted = _m.state.in_([s.value for s in c.SENT_OR_LATER])
        query = (
            sa.select(_m.campaign_id, sa.func.count(), count(*c.SENT_OR_LATER),
                      count(State.DELIVERED), count(*c.FAILED), count(State.REJECTED),
                      count(State.CANCELED), sa.func.sum(sa.case((accepted, _m.cost))),
                      sa.func.max(_m.created_at).label("latest"))
            .where(_m.direction == Direction.OUTBOUND.value, _m.campaign_id.is_not(None),
                   _m.created_at >= lo, _m.created_at < hi)
            .group_by(_m.campaign_id)
            .order_by(sa.desc("latest"), _m.campaign_id.desc())
            .limit(CAMPAIGN_LIMIT)
        )
        rows = conn.execute(query).all()
        if not rows:
            return []
        reply = messages.alias("reply")
        replies = {str(cid): int(n) for cid, n in conn.execute(
            sa.select(_m.campaign_id, sa.func.count())
            .select_from(reply.join(messages, reply.c.in_reply_to == _m.id))
            .where(reply.c.direction == Direction.INBOUND.value, _m.campaign_id.is_not(None),
                   reply.c.created_at >= lo, reply.c.created_at < hi)
            .group_by(_m.campaign_id))}
        clicks = {cid: (int(n), int(people)) for cid, n, people in conn.execute(
            sa.select(_k.campaign_id, sa.func.count(), sa.func.count(sa.distinct(_k.message_id)))
            .where(_k.campaign_id.is_not(None), _k.clicked_at >= lo, _k.clicked_at < hi)
            .group_by(_k.campaign_id)).all()}
        names, optouts = self._campaign_extras(conn, [row[0] for row in rows], lo, hi)
        return [
            CampaignStats(campaign_id=cid, name=names.get(cid), messages=int(total),
                          sent=int(sent), opt_outs=optouts.get(cid, 0),
                          delivered=int(dlv), failed=int(failed), rejected=int(rej),
                          canceled=int(canc), cost=cost if cost is not None else Decimal(0),
                          replies=int(replies.get(cid, 0)),
                          clicks=clicks.get(cid, (0, 0))[0],
                          clicked_messages=clicks.get(cid, (0, 0))[1])
            for cid, total, sent, dlv, failed, rej, canc, cost, _latest in rows
        ]

    @staticmethod
    def _campaign_extras(conn: Connection, ids: List[str], lo: dt.datetime,
                         hi: dt.datetime) -> Tuple[Dict[str, str], Dict[str, int]]:
        """Names (``campaigns`` table) and opt-outs (``blacklist_audit`` additions from an
        opt-out reply; a gateway refusal is not one), when they exist."""
        names: Dict[str, str] = {}
        optouts: Dict[str, int] = {}
        table = metadata.tables.get("campaigns")
        if table is not None and {"id", "name"} <= set(table.c.keys()):
            names = {str(cid): str(name) for cid, name in conn.execute(
                sa.select(table.c.id, table.c.name).where(table.c.id.in_(ids)))}
        audit = metadata.tables.get("blacklist_audit")
        if audit is not None and {"campaign_id", "action", "source",
                                  "created_at"} <= set(audit.c.keys()):
            a = audit.c
            optouts = {cid: int(n) for cid, n in conn.execute(
                sa.select(a.campaign_id, sa.func.count())
                .where(a.campaign_id.in_(ids), a.action == "add",
                       a.source.startswith(OPTOUT_SOURCE_PREFIX, autoescape=True),
                       a.created_at >= lo, a.created_at < hi)
                .group_by(a.campaign_id))}
        return names, optouts

    def _top_links(self, conn: Connection, lo: dt.datetime, hi: dt.datetime,
                   top: int) -> List[LinkClicks]:
        if top <= 0:
            return []
        ranked = (
            sa.select(_k.code, sa.func.count().label("clicks"))
            .where(_k.clicked_at >= lo, _k.clicked_at < hi)
            .group_by(_k.code)
            .order_by(sa.desc("clicks"), _k.code)
            .limit(top)
            .subquery("ranked")
        )
        query = (
            sa.select(_l.code, _l.url, _l.message_id, _l.campaign_id, ranked.c.clicks)
            .select_from(ranked.join(links, ranked.c.code == _l.code))
            .order_by(ranked.c.clicks.desc(), _l.code)
        )
        return [LinkClicks(code=code, url=url, message_id=mid, campaign_id=cid, clicks=int(n))
                for code, url, mid, cid, n in conn.execute(query).all()]


def _add_days(a: DayStats, b: DayStats) -> DayStats:
    """Two rows of the same (day, provider) from two spans, added up."""
    return DayStats(day=a.day, provider=a.provider, sent=a.sent + b.sent,
                    delivered=a.delivered + b.delivered, failed=a.failed + b.failed,
                    rejected=a.rejected + b.rejected, canceled=a.canceled + b.canceled,
                    inbound=a.inbound + b.inbound, cost=a.cost + b.cost)
