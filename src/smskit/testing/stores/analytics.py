"""Store checks of the ``links`` part (:class:`~smskit.store.analytics.LinkStore`: short links
and their clicks) and the ``stats`` part (:class:`~smskit.store.analytics.StatsStore`: every
figure of the dashboard). Days are America/Sao_Paulo days: a message created at 02:30 UTC on
the 10th belongs to the 9th."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, List, Optional

from smskit.errors import ValidationError
from smskit.models import InboundMessage, Message, State
from smskit.store.analytics import CampaignStats, Click, ClickBatchStore, DayCount, Link, LinkClicks
from smskit.store.base import DayStats
from smskit.store.outreach import Campaign
from smskit.testing.stores.runner import check, expect, expect_equal, expect_raises
from smskit.testing.stores.samples import NOW, SP, UTC, add, outgoing

__all__: List[str] = []

TZ = "America/Sao_Paulo"
D9 = dt.datetime(2024, 5, 9, 14, 0, tzinfo=UTC)
LATE = dt.datetime(2024, 5, 9, 23, 30, tzinfo=SP)  # 02:30 UTC on the 10th
D10 = dt.datetime(2024, 5, 10, 13, 0, tzinfo=UTC)
OLD = dt.datetime(2024, 4, 1, 12, 0, tzinfo=UTC)
START, END = dt.date(2024, 4, 11), dt.date(2024, 5, 10)
MAY9, MAY10 = dt.date(2024, 5, 9), dt.date(2024, 5, 10)


# -- links ------------------------------------------------------------------------------------
@check("links")
def link_codes_are_unique_and_clicks_counted(store: Any) -> None:
    """A code stands for one link forever; clicks on known codes are counted, unknown codes
    record nothing; discarding a message's links drops their clicks."""
    link = Link(code="Abc12345", url="https://a.com.br/x", message_id="M1", campaign_id="c",
                created_at=NOW)
    expect_equal(store.add_links([link]), [], "a new code is inserted")
    expect_equal(store.add_links([link]), [], "the same link again is a no-op, not a clash")
    expect_equal(store.add_links([Link(code="Abc12345", url="https://evil.example/",
                                       message_id="M2", created_at=NOW)]), ["Abc12345"],
                 "a code taken by another message is refused")
    expect_equal(store.get_link("Abc12345"), link, "get_link")
    expect(store.get_link("abc12345") is None, "codes are case-sensitive")
    expect(store.record_click("Nope0000", NOW) is None, "a click on an unknown code")
    expect_equal(store.record_click("Abc12345", NOW, "Mozilla/5.0 " + "x" * 500), link,
                 "a click returns the link")
    expect_equal(store.record_click("Abc12345", NOW + dt.timedelta(seconds=1)), link,
                 "a click without a user agent")
    expect_equal(store.click_count("Abc12345"), 2, "click_count")
    expect_equal(store.click_count("Nope0000"), 0, "click_count of an unknown code")
    expect_equal(store.links_of("M1"), [link], "links_of")
    expect_equal(store.discard_links(["M1", "M9"]), 1, "links discarded")
    expect(store.get_link("Abc12345") is None and store.click_count("Abc12345") == 0,
           "a discarded link and its clicks are gone")


@check("links")
def clicks_written_in_a_batch_count_like_single_ones(store: Any) -> None:
    """``record_clicks`` (where a store has it) counts many clicks at once as
    ``record_click`` counts one; clicks on unknown codes are skipped."""
    batches = isinstance(store, ClickBatchStore)  # a bool: ``store`` keeps its own type
    if not batches:
        return
    store.add_links([Link(code="Batch001", url="https://a.com.br/1", message_id="M1",
                          campaign_id="c", created_at=NOW),
                     Link(code="Batch002", url="https://a.com.br/2", message_id="M2",
                          created_at=NOW)])
    clicks = [Click(code="Batch001", at=NOW, user_agent="x" * 500),
              Click(code="Nope0000", at=NOW),
              Click(code="Batch002", at=NOW + dt.timedelta(seconds=1)),
              Click(code="Batch001", at=NOW + dt.timedelta(seconds=2))]
    expect_equal(store.record_clicks(clicks), 3, "clicks recorded (the unknown code skipped)")
    expect_equal(store.record_clicks([]), 0, "no clicks")
    expect_equal((store.click_count("Batch001"), store.click_count("Batch002"),
                  store.click_count("Nope0000")), (2, 1, 0), "click counts")


@check("links")
def a_taken_code_refuses_only_that_link(store: Any) -> None:
    """add_links inserts every free code of a call and names the taken ones; links_of gives a
    message's links in creation order."""
    store.add_links([Link(code="Taken001", url="https://a.com.br/1", message_id="M1",
                          created_at=NOW)])
    second = Link(code="Fresh002", url="https://a.com.br/2", message_id="M2",
                  created_at=NOW + dt.timedelta(seconds=2))
    first = Link(code="Fresh001", url="https://a.com.br/3", message_id="M2",
                 created_at=NOW + dt.timedelta(seconds=1))
    taken = store.add_links([second, Link(code="Taken001", url="https://b.com.br",
                                          message_id="M2", created_at=NOW), first])
    expect_equal(taken, ["Taken001"], "the taken code is named")
    expect_equal(store.links_of("M2"), [first, second],
                 "the free links are inserted, by creation order")
    expect_equal(store.get_link("Taken001").message_id, "M1", "the taken code keeps its owner")
    with expect_raises(ValidationError, "a click at a naive time"):
        store.record_click("Fresh001", dt.datetime(2024, 5, 10))


# -- stats -------------------------------------------------------------------------------------
def _message(n: int, state: State, created: dt.datetime, *, provider: str = "kolmeya",
             cost: Optional[str] = None, campaign: Optional[str] = None) -> Message:
    return outgoing(n, state=state, provider=provider, created_at=created, segments=1,
                    cost=Decimal(cost) if cost else None, campaign_id=campaign)


def _seed(store: Any) -> Dict[str, List[Message]]:
    """Messages of two campaigns and none, on the 9th, late on the 9th, the 10th and in April,
    with two replies."""
    promo = add(store, _message(1, State.DELIVERED, D9, cost="0.08", campaign="promo"),
                _message(2, State.DELIVERED, LATE, cost="0.16", campaign="promo"),
                _message(3, State.ERROR, D9, cost="0.08", campaign="promo"))
    cobranca = add(store, _message(4, State.SENT, D10, cost="0.08", campaign="cobranca"),
                   _message(5, State.REJECTED, D10, campaign="cobranca"))
    add(store, _message(6, State.DELIVERED, D10, provider="loopback", cost="0.10"),
        _message(7, State.CANCELED, D10, provider="loopback"),
        _message(8, State.DELIVERED, OLD, cost="0.08", campaign="promo"))
    store.record_inbound(InboundMessage(provider="kolmeya", provider_reply_id="R1",
                                        phone=promo[0].phone, body="quero", received_at=D10,
                                        in_reply_to_message_id=promo[0].id))
    store.record_inbound(InboundMessage(provider="loopback", provider_reply_id="R2",
                                        phone="+5511911112222", body="oi", received_at=D9))
    return {"promo": promo, "cobranca": cobranca}


def _day(day: dt.date, provider: str, sent: int, delivered: int, failed: int, rejected: int,
         canceled: int, inbound: int, cost: str) -> DayStats:
    return DayStats(day=day, provider=provider, sent=sent, delivered=delivered, failed=failed,
                    rejected=rejected, canceled=canceled, inbound=inbound, cost=Decimal(cost))


EXPECTED_DAYS = [
    _day(MAY9, "kolmeya", 3, 2, 1, 0, 0, 0, "0.32"),
    _day(MAY9, "loopback", 0, 0, 0, 0, 0, 1, "0"),
    _day(MAY10, "kolmeya", 1, 0, 0, 1, 0, 1, "0.08"),
    _day(MAY10, "loopback", 1, 1, 0, 0, 1, 0, "0.10"),
]


def _campaign_row(cid: str, messages: int, sent: int, delivered: int, failed: int,
                  rejected: int, cost: str, replies: int, clicks: int = 0,
                  clicked: int = 0) -> CampaignStats:
    return CampaignStats(campaign_id=cid, messages=messages, sent=sent, delivered=delivered,
                         failed=failed, rejected=rejected, canceled=0, cost=Decimal(cost),
                         replies=replies, clicks=clicks, clicked_messages=clicked)


@check("stats")
def dashboard_stats_on_a_seeded_store(store: Any) -> None:
    """dashboard_stats gives the local days, the campaigns (most recently active first) and
    the totals of a date range."""
    _seed(store)
    report = store.dashboard_stats(START, END, TZ)
    expect_equal((report.start, report.end, report.timezone), (START, END, TZ), "the range")
    expect_equal(list(report.days), EXPECTED_DAYS, "days: local days by provider")
    expect_equal(list(report.campaigns), [
        _campaign_row("cobranca", 2, 1, 0, 0, 1, "0.08", 0),
        _campaign_row("promo", 3, 3, 2, 1, 0, "0.32", 1),
    ], "campaigns: messages created in the range, replies that happened in it")
    totals = report.totals
    expect_equal((totals.sent, totals.delivered, totals.failed, totals.rejected,
                  totals.canceled, totals.cost, totals.replies),
                 (5, 3, 1, 1, 1, Decimal("0.50"), 2), "totals")
    expect_equal((list(report.clicks), list(report.top_links), list(report.opt_outs)),
                 ([], [], []), "no clicks and no opt-outs")
    one_day = store.dashboard_stats(MAY10, MAY10, TZ)
    expect_equal(list(one_day.days), EXPECTED_DAYS[2:], "one day narrows the days")
    expect_equal([c.campaign_id for c in one_day.campaigns], ["cobranca"],
                 "one day narrows the campaigns")
    april = store.dashboard_stats(dt.date(2024, 4, 1), dt.date(2024, 4, 1), TZ)
    expect_equal((april.totals.sent, [c.campaign_id for c in april.campaigns]), (1, ["promo"]),
                 "an April day")
    with expect_raises(ValidationError, "a range ending before it starts", match="before"):
        store.dashboard_stats(MAY10, MAY9, TZ)


@check("stats", "links")
def dashboard_stats_counts_clicks_and_top_links(store: Any) -> None:
    """Clicks count on the local day they happened, per campaign (and clicked messages) and
    per link, most clicked first."""
    made = _seed(store)
    promo, cobranca = made["promo"][0], made["cobranca"][0]
    store.add_links([
        Link(code="PromoL01", url="https://loja.com.br/promo", message_id=promo.id,
             campaign_id="promo", created_at=D9),
        Link(code="CobrL002", url="https://pag.com.br/boleto", message_id=cobranca.id,
             campaign_id="cobranca", created_at=D10),
    ])
    for at in (D10, D10, D10, LATE):
        store.record_click("PromoL01", at, "Mozilla/5.0")
    store.record_click("CobrL002", D10)
    store.record_click("CobrL002", OLD)  # outside the range
    report = store.dashboard_stats(START, END, TZ)
    expect_equal(list(report.clicks), [DayCount(day=MAY9, count=1), DayCount(day=MAY10, count=4)],
                 "clicks per local day")
    expect_equal(list(report.top_links), [
        LinkClicks(code="PromoL01", url="https://loja.com.br/promo", message_id=promo.id,
                   campaign_id="promo", clicks=4),
        LinkClicks(code="CobrL002", url="https://pag.com.br/boleto", message_id=cobranca.id,
                   campaign_id="cobranca", clicks=1),
    ], "top links, most clicked first")
    expect_equal({c.campaign_id: (c.clicks, c.clicked_messages) for c in report.campaigns},
                 {"promo": (4, 1), "cobranca": (1, 1)},
                 "clicks per campaign, and the messages clicked at least once")
    expect_equal(report.totals.clicks, 5, "total clicks in the range")
    expect_equal([t.code for t in store.dashboard_stats(START, END, TZ, top=1).top_links],
                 ["PromoL01"], "top=1")


@check("stats")
def dashboard_days_are_the_local_days_of_stats_by_day(store: Any) -> None:
    """dashboard_stats' days are stats_by_day's in the same zone, also across a DST change."""
    # 2018: São Paulo moved to -02 on Nov 4th (00:00 -> 01:00)
    edge = [dt.datetime(2018, 11, 4, 2, 59, tzinfo=UTC), dt.datetime(2018, 11, 4, 3, 0, tzinfo=UTC),
            dt.datetime(2018, 11, 5, 1, 59, tzinfo=UTC), dt.datetime(2018, 11, 5, 2, 0, tzinfo=UTC)]
    add(store, *[_message(50 + i, State.SENT, at, cost="0.01") for i, at in enumerate(edge)])
    first, last = dt.date(2018, 11, 1), dt.date(2018, 11, 30)
    rows = store.stats_by_day(first, last, tz=TZ)
    expect_equal([(d.day.isoformat(), d.sent) for d in rows],
                 [("2018-11-03", 1), ("2018-11-04", 2), ("2018-11-05", 1)],
                 "local days across the DST change")
    expect_equal(list(store.dashboard_stats(first, last, TZ).days), rows,
                 "dashboard_stats' days")


@check("stats", "links")
def the_last_microseconds_of_a_local_day_count_on_that_day(store: Any) -> None:
    """A message and a click at 23:59:59.9999 in São Paulo belong to that day, not the next
    (a day is never rounded up to the next second)."""
    last = dt.datetime(2024, 5, 9, 23, 59, 59, 999900, tzinfo=SP)  # 02:59:59.9999 UTC, 10th
    (sent,) = add(store, _message(60, State.SENT, last, cost="0.08"))
    store.add_links([Link(code="Ultimo01", url="https://loja.com.br/u", message_id=sent.id,
                          created_at=last)])
    store.record_click("Ultimo01", last.astimezone(UTC))
    expect_equal([(d.day, d.sent) for d in store.stats_by_day(MAY9, MAY10, tz=TZ)],
                 [(MAY9, 1)], "stats_by_day: the day it was sent in São Paulo")
    report = store.dashboard_stats(MAY9, MAY9, TZ)
    expect_equal([(d.day, d.sent) for d in report.days], [(MAY9, 1)],
                 "dashboard days: the 9th, and no row outside the range")
    expect_equal(list(report.clicks), [DayCount(day=MAY9, count=1)], "clicks of the 9th")


@check("stats")
def dashboard_stats_counts_opt_outs_on_their_day(store: Any) -> None:
    """Blacklist entries from an opt-out reply (source ``inbound:...``) count on their local
    day; other entries do not."""
    store.blacklist_add("+5511987654321", "opt-out keyword SAIR", "inbound:loopback")
    store.blacklist_add("+5511987654322", "asked by phone", "cli")
    added = [e.created_at for e in store.list_blacklist() if e.source == "inbound:loopback"]
    expect_equal(len(added), 1, "the opt-out is on the list")
    today = added[0].astimezone(SP).date()
    report = store.dashboard_stats(today - dt.timedelta(days=1), today + dt.timedelta(days=1),
                                   TZ)
    expect_equal(list(report.opt_outs), [DayCount(day=today, count=1)], "opt-outs per day")
    expect_equal(report.totals.opt_outs, 1, "total opt-outs")


@check("stats", "outreach")
def dashboard_stats_names_campaigns_and_counts_their_opt_outs(store: Any) -> None:
    """Campaign rows take their names from the campaigns table and their opt-outs from the
    blacklist audit."""
    made = _seed(store)
    store.add_campaign(Campaign(id="promo", name="Promoção de maio", template="x",
                                audience={"phones": []}))
    store.blacklist_change(made["promo"][0].phone, "add", reason="opt-out keyword SAIR",
                           source="inbound:kolmeya", campaign_id="promo", now=D10)
    report = store.dashboard_stats(START, END, TZ)
    expect_equal({c.campaign_id: (c.name, c.opt_outs) for c in report.campaigns},
                 {"promo": ("Promoção de maio", 1), "cobranca": (None, 0)},
                 "campaign names and opt-outs")
    expect_equal(list(report.opt_outs), [DayCount(day=MAY10, count=1)], "opt-outs per day")
