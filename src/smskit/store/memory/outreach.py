"""The in-memory :class:`~smskit.store.outreach.OutreachStore` part of
:class:`~smskit.store.memory.MemoryStore` (the same rules as the SQL store, behind its lock)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attrs

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import Direction, Message, State, utcnow
from smskit.store import outreach_rules as r
from smskit.store import rules as c
from smskit.store.analytics import OPTOUT_SOURCE_PREFIX
from smskit.store.base import BlacklistEntry
from smskit.store.outreach import (
    HELD_STATUSES,
    BlacklistAuditEntry,
    BlacklistSyncItem,
    Campaign,
    CampaignTotals,
    Contact,
)

__all__ = ["MemoryOutreachMixin"]


class MemoryOutreachMixin:
    """Contacts, campaigns, the audited blacklist, its sync queue and key/value state."""

    _lock: threading.RLock
    _messages: Dict[str, Message]
    _blacklist: Dict[str, BlacklistEntry]

    def _init_outreach(self) -> None:
        self._contacts: Dict[str, Contact] = {}
        self._campaigns: Dict[str, Campaign] = {}
        self._audit: List[BlacklistAuditEntry] = []
        self._sync: Dict[int, BlacklistSyncItem] = {}
        self._state: Dict[str, str] = {}

    def _held_campaigns(self) -> Set[str]:
        return {k for k, v in self._campaigns.items() if v.status in HELD_STATUSES}

    # -- contacts -----------------------------------------------------------------------------
    def save_contacts(self, contacts: Iterable[Contact]) -> Tuple[int, int]:
        """Insert or replace contacts by phone: ``(created, updated)``."""
        given = [r.normalise_contact(x) for x in contacts]
        created = updated = 0
        with self._lock:
            for contact in given:
                old = self._contacts.get(contact.phone)
                if old is None:
                    created += 1
                else:
                    updated += 1
                    contact = attrs.evolve(contact, created_at=old.created_at)
                self._contacts[contact.phone] = contact
        return created, updated

    def get_contacts(self, phones: Sequence[str]) -> Dict[str, Contact]:
        """The stored contacts among ``phones``."""
        with self._lock:
            return {p: self._contacts[p] for p in phones if p in self._contacts}

    def list_contacts(self, *, tag: Optional[str] = None, limit: int = 100,
                      offset: int = 0) -> List[Contact]:
        """Contacts by phone, optionally only those with ``tag``."""
        if limit < 0 or offset < 0:
            raise ValidationError(f"limit and offset must be >= 0, got {limit!r} and {offset!r}")
        with self._lock:
            found = [x for x in self._contacts.values() if tag is None or tag in x.tags]
        found.sort(key=lambda x: x.phone)
        return found[offset:offset + limit]

    def contacts_by_tags(self, tags: Sequence[str], *, match: str = "any",
                         after: Optional[str] = None, limit: int = 1000) -> List[Contact]:
        """Keyset page of contacts with any/all of ``tags``, by phone."""
        r.check_match(match)
        wanted = set(tags)
        if not wanted:
            return []
        test = wanted.issubset if match == "all" else wanted.intersection
        with self._lock:
            found = [x for x in self._contacts.values()
                     if (after is None or x.phone > after) and test(x.tags)]
        found.sort(key=lambda x: x.phone)
        return found[:limit]

    def dnd_contacts(self, phones: Sequence[str], now: dt.datetime) -> Dict[str, Contact]:
        """Contacts among ``phones`` whose do-not-disturb can still apply."""
        now = c.require_utc(now, "now")
        with self._lock:
            found = (self._contacts.get(p) for p in phones)
            return {x.phone: x for x in found if x is not None and _dnd_applies(x, now)}

    # -- campaigns ----------------------------------------------------------------------------
    def add_campaign(self, campaign: Campaign) -> Campaign:
        """Store a new campaign."""
        stored = r.normalise_campaign(campaign)
        with self._lock:
            if stored.id in self._campaigns:
                raise StoreError(f"campaign {stored.id!r} already exists")
            self._campaigns[stored.id] = stored
        return stored

    def get_campaign(self, campaign_id: str) -> Optional[Campaign]:
        """A campaign by id."""
        with self._lock:
            return self._campaigns.get(campaign_id)

    def list_campaigns(self, *, statuses: Optional[Sequence[str]] = None) -> List[Campaign]:
        """Campaigns, oldest first."""
        with self._lock:
            found = [x for x in self._campaigns.values()
                     if statuses is None or x.status in statuses]
        return sorted(found, key=lambda x: (x.created_at, x.id))

    def _require_campaign(self, campaign_id: str) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise NotFoundError(f"no campaign {campaign_id!r}")
        return campaign

    def set_campaign_status(self, campaign_id: str, status: str, *,
                            expected: Sequence[str], now: dt.datetime,
                            error: Optional[str] = None) -> Optional[Campaign]:
        """Compare-and-set of the status."""
        r.check_status(status)
        now = c.require_utc(now, "now")
        with self._lock:
            campaign = self._require_campaign(campaign_id)
            if campaign.status not in expected:
                return None
            changed = attrs.evolve(campaign, **r.status_changes(campaign, status, now, error))
            self._campaigns[campaign_id] = changed
            return changed

    def advance_campaign(self, campaign_id: str, *, expected_cursor: Optional[str],
                         new_cursor: Optional[str], materialised: bool, skipped: int,
                         now: dt.datetime) -> bool:
        """Compare-and-set of the cursor while ``running``."""
        now = c.require_utc(now, "now")
        with self._lock:
            campaign = self._require_campaign(campaign_id)
            if campaign.status != "running" or campaign.cursor != expected_cursor:
                return False
            self._campaigns[campaign_id] = attrs.evolve(
                campaign, cursor=new_cursor, materialised=materialised,
                skipped=campaign.skipped + skipped, updated_at=now)
            return True

    def update_campaign(self, campaign_id: str, *, job_ids: Optional[Sequence[int]] = None,
                        last_error: Optional[str] = None, clear_error: bool = False,
                        now: dt.datetime) -> Campaign:
        """Record gateway job ids and/or an error note."""
        now = c.require_utc(now, "now")
        with self._lock:
            campaign = self._require_campaign(campaign_id)
            changes: Dict[str, Any] = {"updated_at": now}
            if job_ids is not None:
                changes["job_ids"] = tuple(job_ids)
            if last_error is not None or clear_error:
                changes["last_error"] = last_error
            changed = attrs.evolve(campaign, **changes)
            self._campaigns[campaign_id] = changed
            return changed

    def cancel_campaign_messages(self, campaign_id: str, reason: str, now: dt.datetime) -> int:
        """Cancel the campaign's unclaimed messages."""
        now = c.require_utc(now, "now")
        count = 0
        with self._lock:
            for message in list(self._messages.values()):
                if (message.campaign_id == campaign_id and message.batch_id is None
                        and message.state in c.CANCELABLE
                        and message.direction is Direction.OUTBOUND):
                    self._messages[message.id] = attrs.evolve(
                        message, state=State.CANCELED, error_code="campaign",
                        error_text=reason, updated_at=now)
                    count += 1
        return count

    def campaign_totals(self, campaign_ids: Sequence[str]) -> Dict[str, CampaignTotals]:
        """Totals per campaign."""
        wanted = set(campaign_ids)
        rows: Dict[str, Dict[str, Tuple[int, Optional[Decimal]]]] = {k: {} for k in wanted}
        replies: Dict[str, int] = dict.fromkeys(wanted, 0)
        optouts: Dict[str, int] = dict.fromkeys(wanted, 0)
        with self._lock:
            for m in self._messages.values():
                if m.direction is Direction.OUTBOUND and m.campaign_id in wanted:
                    table = rows[m.campaign_id]
                    count, cost = table.get(m.state.value, (0, Decimal(0)))
                    table[m.state.value] = (count + 1, (cost or Decimal(0)) + (m.cost or 0))
                elif m.direction is Direction.INBOUND and m.in_reply_to:
                    original = self._messages.get(m.in_reply_to)
                    if original is not None and original.campaign_id in wanted:
                        replies[original.campaign_id] += 1
            for entry in self._audit:
                if (entry.action == "add" and entry.campaign_id in wanted
                        and entry.source.startswith(OPTOUT_SOURCE_PREFIX)):
                    optouts[entry.campaign_id] += 1
        return {k: r.totals_from_states(k, rows[k], replies[k], optouts[k]) for k in wanted}

    # -- audited blacklist ----------------------------------------------------------------------
    def blacklist_change(self, phone: str, action: str, *, reason: str, source: str,
                         sync_to: Sequence[str] = (), campaign_id: Optional[str] = None,
                         now: Optional[dt.datetime] = None) -> bool:
        """Change the list, audit it and queue its sync, all at once."""
        r.check_action(action)
        at = c.require_utc(now or utcnow(), "now")
        with self._lock:
            if (phone in self._blacklist) == (action == "add"):
                return False
            if action == "add":
                self._blacklist[phone] = BlacklistEntry(phone=phone, reason=reason,
                                                        source=source, created_at=at)
            else:
                del self._blacklist[phone]
            self._audit.append(BlacklistAuditEntry(
                id=len(self._audit) + 1, phone=phone, action=action, source=source,
                reason=reason, created_at=at, campaign_id=campaign_id))
            for provider in dict.fromkeys(sync_to):
                item_id = len(self._sync) + 1
                self._sync[item_id] = BlacklistSyncItem(
                    id=item_id, phone=phone, action=action, provider=provider,
                    status="pending", created_at=at, next_attempt_at=at)
            return True

    def blacklist_add(self, phone: str, reason: str, source: str) -> bool:
        """Add a number (audited, not synced); ``False`` if it was already there."""
        return self.blacklist_change(phone, "add", reason=reason, source=source)

    def blacklist_remove(self, phone: str) -> bool:
        """Remove a number (audited, not synced); ``False`` if it was not there."""
        return self.blacklist_change(phone, "remove", reason="", source="store")

    def blacklist_audit(self, phone: Optional[str] = None, *,
                        limit: int = 1000) -> List[BlacklistAuditEntry]:
        """Audit lines, oldest first (the last ``limit``)."""
        with self._lock:
            found = [e for e in self._audit if phone is None or e.phone == phone]
        return found[-limit:] if limit else []

    def pending_blacklist_sync(self, provider: str, now: dt.datetime,
                               limit: int = 1000) -> List[BlacklistSyncItem]:
        """Pending items of ``provider`` due at ``now``, in queue order."""
        now = c.require_utc(now, "now")
        with self._lock:
            found = [i for i in self._sync.values() if i.provider == provider
                     and i.status == "pending" and i.next_attempt_at <= now]
        return sorted(found, key=lambda i: i.id)[:limit]

    def finish_blacklist_sync(self, ids: Sequence[int], status: str, now: dt.datetime,
                              error: Optional[str] = None) -> None:
        """Mark items acknowledged, refused or skipped."""
        r.check_sync_status(status)
        now = c.require_utc(now, "now")
        with self._lock:
            for item_id in ids:
                item = self._sync.get(item_id)
                if item is not None and item.status == "pending":
                    self._sync[item_id] = attrs.evolve(
                        item, status=status, acknowledged_at=now, attempts=item.attempts + 1,
                        last_error=error if error is not None else item.last_error)

    def retry_blacklist_sync(self, ids: Sequence[int], error: str,
                             retry_at: dt.datetime) -> None:
        """Count a failed attempt and try again at ``retry_at``."""
        retry_at = c.require_utc(retry_at, "retry_at")
        with self._lock:
            for item_id in ids:
                item = self._sync.get(item_id)
                if item is not None and item.status == "pending":
                    self._sync[item_id] = attrs.evolve(
                        item, attempts=item.attempts + 1, last_error=error,
                        next_attempt_at=retry_at)

    def blacklist_sync_items(self, *, status: Optional[str] = None,
                             limit: int = 1000) -> List[BlacklistSyncItem]:
        """Sync items, newest first."""
        with self._lock:
            found = [i for i in self._sync.values() if status is None or i.status == status]
        return sorted(found, key=lambda i: -i.id)[:limit]

    def blacklist_sync_backlog(self) -> Dict[str, int]:
        """Pending items per provider."""
        out: Dict[str, int] = {}
        with self._lock:
            for item in self._sync.values():
                if item.status == "pending":
                    out[item.provider] = out.get(item.provider, 0) + 1
        return out

    # -- key/value state ------------------------------------------------------------------------
    def get_state(self, key: str) -> Optional[str]:
        """A piece of state, or ``None``."""
        with self._lock:
            return self._state.get(key)

    def set_state(self, key: str, value: str) -> None:
        """Write a piece of state."""
        with self._lock:
            self._state[key] = value

    def list_state(self, prefix: str) -> Dict[str, str]:
        """Every key starting with ``prefix``."""
        with self._lock:
            return {k: v for k, v in self._state.items() if k.startswith(prefix)}

    def reserve_slot(self, key: str, seconds: float, now: float) -> float:
        """Reserve ``seconds`` of the time line ``key`` (kept in the key/value state);
        the slot's start."""
        with self._lock:
            start = max(now, _float(self._state.get(key)))
            self._state[key] = repr(start + seconds)
        return start


def _float(text: Optional[str]) -> float:
    try:
        return float(text) if text else float("-inf")
    except ValueError:  # a value another program wrote: start the time line again
        return float("-inf")


def _dnd_applies(contact: Contact, now: dt.datetime) -> bool:
    return bool(contact.dnd_window or contact.dnd_days
                or (contact.dnd_until is not None and contact.dnd_until > now))
