"""Rules the memory and SQL outreach stores share (validation, totals), so they cannot drift."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import attrs

from smskit.errors import ValidationError
from smskit.models import State
from smskit.store import rules as c
from smskit.store.outreach import (
    ACTIONS,
    CAMPAIGN_STATUSES,
    SYNC_STATUSES,
    Campaign,
    CampaignTotals,
    Contact,
)

__all__ = [
    "check_action",
    "check_match",
    "check_status",
    "check_sync_status",
    "normalise_campaign",
    "normalise_contact",
    "totals_from_states",
]

MATCHES = ("any", "all")


def check_action(action: str) -> str:
    """``action`` if it is ``add`` or ``remove``."""
    if action not in ACTIONS:
        raise ValidationError(f"blacklist action must be 'add' or 'remove', got {action!r}")
    return action


def check_match(match: str) -> str:
    """``match`` if it is ``any`` or ``all``."""
    if match not in MATCHES:
        raise ValidationError(f"tag match must be 'any' or 'all', got {match!r}")
    return match


def check_status(status: str) -> str:
    """``status`` if it is a campaign status."""
    if status not in CAMPAIGN_STATUSES:
        raise ValidationError(f"unknown campaign status {status!r} "
                              f"(one of {', '.join(CAMPAIGN_STATUSES)})")
    return status


def check_sync_status(status: str) -> str:
    """``status`` if it ends a sync item (acknowledged, refused, skipped)."""
    if status not in SYNC_STATUSES or status == "pending":
        raise ValidationError(f"a sync item ends acknowledged, refused or skipped, got {status!r}")
    return status


def _json_copy(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON: {exc}") from exc


def normalise_contact(contact: Contact) -> Contact:
    """The contact as a store keeps it: UTC datetimes, JSON variables, tags without blanks."""
    for tag in contact.tags:
        if not tag.strip():
            raise ValidationError(f"contact {contact.phone}: empty tag")
    return attrs.evolve(
        contact,
        variables=_json_copy(contact.variables, f"contact {contact.phone} variables"),
        dnd_until=c.require_aware(contact.dnd_until, "dnd_until"),
        created_at=c.require_utc(contact.created_at, "created_at"),
        updated_at=c.require_utc(contact.updated_at, "updated_at"),
    )


def normalise_campaign(campaign: Campaign) -> Campaign:
    """The campaign as a store keeps it: UTC datetimes and JSON copies."""
    check_status(campaign.status)
    return attrs.evolve(
        campaign,
        audience=_json_copy(campaign.audience, f"campaign {campaign.id} audience"),
        variables=_json_copy(campaign.variables, f"campaign {campaign.id} variables"),
        scheduled_at=c.require_aware(campaign.scheduled_at, "scheduled_at"),
        created_at=c.require_utc(campaign.created_at, "created_at"),
        updated_at=c.require_utc(campaign.updated_at, "updated_at"),
        started_at=c.require_aware(campaign.started_at, "started_at"),
        finished_at=c.require_aware(campaign.finished_at, "finished_at"),
    )


def status_changes(campaign: Campaign, status: str, now: dt.datetime,
                   error: Optional[str]) -> Dict[str, Any]:
    """The fields a status change writes."""
    changes: Dict[str, Any] = {"status": status, "updated_at": now}
    if status == "running" and campaign.started_at is None:
        changes["started_at"] = now
    if status in ("done", "canceled"):
        changes["finished_at"] = now
    if error is not None:
        changes["last_error"] = error or None
    return changes


def totals_from_states(campaign_id: str,
                       rows: Mapping[str, Tuple[int, Optional[Decimal]]],
                       replies: int = 0, optouts: int = 0) -> CampaignTotals:
    """Totals from ``{state: (count, cost of those messages)}`` of one campaign."""
    counts = {State(s): n for s, (n, _) in rows.items()}
    sent_states = set(c.SENT_OR_LATER)
    cost = sum((cost or Decimal(0) for s, (_, cost) in rows.items() if State(s) in sent_states),
               Decimal(0))

    def count(states: Sequence[State]) -> int:
        return sum(counts.get(s, 0) for s in states)

    return CampaignTotals(
        campaign_id=campaign_id, total=sum(counts.values()),
        queued=count((State.DRAFT, State.OUTGOING)), sent=count(c.SENT_OR_LATER),
        delivered=count((State.DELIVERED,)), failed=count(c.FAILED),
        rejected=count((State.REJECTED,)), canceled=count((State.CANCELED,)),
        replies=replies, optouts=optouts, cost=cost,
    )
