"""The SQL :class:`~smskit.store.outreach.OutreachStore` part of
:class:`~smskit.store.sql.store.SqlStore`: contacts, campaigns, the audited blacklist with its sync
queue, and key/value state. Every count is an aggregate query."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

import attrs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from smskit.errors import NotFoundError, StoreError, ValidationError
from smskit.models import Direction, State, utcnow
from smskit.store import outreach_rules as r
from smskit.store import rules as c
from smskit.store.analytics import OPTOUT_SOURCE_PREFIX
from smskit.store.outreach import (
    HELD_STATUSES,
    BlacklistAuditEntry,
    BlacklistSyncItem,
    Campaign,
    CampaignTotals,
    Contact,
)
from smskit.store.sql.driver import SqlBase, chunks
from smskit.store.sql.engine import upsert
from smskit.store.sql.tables import (
    blacklist,
    blacklist_audit,
    blacklist_sync,
    campaigns,
    contact_tags,
    contacts,
    kv_state,
    messages,
)

__all__ = ["SqlOutreachMixin", "held_campaigns"]

_m = messages.c
_ct = contact_tags.c
_cp = campaigns.c
_bs = blacklist_sync.c


def held_campaigns() -> sa.Select[Any]:
    """The ids of campaigns whose messages must not be claimed (for ``NOT IN``)."""
    return sa.select(_cp.id).where(_cp.status.in_(HELD_STATUSES))


def _contact_row(x: Contact) -> Dict[str, Any]:
    return {"phone": x.phone, "name": x.name, "tags": list(x.tags), "variables": x.variables,
            "dnd_window": x.dnd_window, "dnd_days": list(x.dnd_days),
            "dnd_until": x.dnd_until, "created_at": x.created_at, "updated_at": x.updated_at}


def _row_contact(row: Mapping[Any, Any]) -> Contact:
    return Contact(phone=row["phone"], name=row["name"], tags=row["tags"] or (),
                   variables=row["variables"] or {}, dnd_window=row["dnd_window"],
                   dnd_days=row["dnd_days"] or (), dnd_until=row["dnd_until"],
                   created_at=row["created_at"], updated_at=row["updated_at"])


def _campaign_row(x: Campaign) -> Dict[str, Any]:
    # The audience lives in the column "segment", its first name (renaming the column would
    # need a migration and gain nothing).
    return {"id": x.id, "name": x.name, "template": x.template, "segment": x.audience,
            "variables": x.variables, "status": x.status, "provider": x.provider,
            "scheduled_at": x.scheduled_at, "cursor": x.cursor, "materialised": x.materialised,
            "skipped": x.skipped, "job_ids": list(x.job_ids), "last_error": x.last_error,
            "created_at": x.created_at, "updated_at": x.updated_at,
            "started_at": x.started_at, "finished_at": x.finished_at}


def _row_campaign(row: Mapping[Any, Any]) -> Campaign:
    fields = {k: row[k] for k in ("id", "name", "template", "status", "provider",
                                  "scheduled_at", "cursor", "last_error", "created_at",
                                  "updated_at", "started_at", "finished_at")}
    return Campaign(audience=row["segment"], variables=row["variables"] or {},
                    materialised=bool(row["materialised"]), skipped=int(row["skipped"]),
                    job_ids=row["job_ids"] or (), **fields)


def _row_audit(row: Mapping[Any, Any]) -> BlacklistAuditEntry:
    return BlacklistAuditEntry(id=int(row["id"]), phone=row["phone"], action=row["action"],
                               source=row["source"], reason=row["reason"],
                               campaign_id=row["campaign_id"], created_at=row["created_at"])


def _row_sync(row: Mapping[Any, Any]) -> BlacklistSyncItem:
    return BlacklistSyncItem(id=int(row["id"]), phone=row["phone"], action=row["action"],
                             provider=row["provider"], status=row["status"],
                             attempts=int(row["attempts"]), created_at=row["created_at"],
                             next_attempt_at=row["next_attempt_at"],
                             acknowledged_at=row["acknowledged_at"],
                             last_error=row["last_error"])


class SqlOutreachMixin(SqlBase):
    """Contacts, campaigns, audited blacklist, sync queue and state of ``SqlStore``."""

    # -- contacts -----------------------------------------------------------------------------
    def save_contacts(self, contacts_: Iterable[Contact]) -> Tuple[int, int]:
        """Insert or replace contacts by phone in one transaction: ``(created, updated)``."""
        given = {x.phone: r.normalise_contact(x) for x in contacts_}
        if not given:
            return 0, 0
        with self._tx("save_contacts", write=True) as conn:
            old: Set[str] = set()
            for chunk in chunks(list(given)):
                old.update(conn.execute(sa.select(contacts.c.phone).where(
                    contacts.c.phone.in_(chunk))).scalars())
            # One upsert (a contact keeps its created_at): two imports of the same numbers
            # at once both succeed. The contacts' rows, locked by it, then order the two
            # imports' tag replacements.
            conn.execute(upsert(contacts, contacts.c.phone, postgres=self._pg,
                                keep=("created_at",)),
                         [_contact_row(contact) for contact in given.values()])
            for chunk in chunks(list(given)):
                conn.execute(sa.delete(contact_tags).where(_ct.phone.in_(chunk)))
            tag_rows = [{"tag": t, "phone": x.phone} for x in given.values() for t in x.tags]
            if tag_rows:
                conn.execute(sa.insert(contact_tags), tag_rows)
        return len(given) - len(old), len(old)

    def get_contacts(self, phones: Sequence[str]) -> Dict[str, Contact]:
        """The stored contacts among ``phones``."""
        found: Dict[str, Contact] = {}
        with self._tx("get_contacts") as conn:
            for chunk in chunks(list(dict.fromkeys(phones))):
                query = sa.select(contacts).where(contacts.c.phone.in_(chunk))
                found.update({row["phone"]: _row_contact(row)
                              for row in conn.execute(query).mappings()})
        return found

    def list_contacts(self, *, tag: Optional[str] = None, limit: int = 100,
                      offset: int = 0) -> List[Contact]:
        """Contacts by phone, optionally only those with ``tag``."""
        if limit < 0 or offset < 0:
            raise ValidationError(f"limit and offset must be >= 0, got {limit!r} and {offset!r}")
        query = sa.select(contacts).order_by(contacts.c.phone).limit(limit).offset(offset)
        if tag is not None:
            query = query.where(contacts.c.phone.in_(
                sa.select(_ct.phone).where(_ct.tag == tag)))
        with self._tx("list_contacts") as conn:
            return [_row_contact(row) for row in conn.execute(query).mappings()]

    def contacts_by_tags(self, tags: Sequence[str], *, match: str = "any",
                         after: Optional[str] = None, limit: int = 1000) -> List[Contact]:
        """Keyset page of contacts with any/all of ``tags``: an index range scan by phone."""
        r.check_match(match)
        wanted = list(dict.fromkeys(tags))
        if not wanted or limit < 1:
            return []
        query = sa.select(_ct.phone).where(_ct.tag.in_(wanted)).group_by(_ct.phone)
        if after is not None:
            query = query.where(_ct.phone > after)
        if match == "all":
            query = query.having(sa.func.count() == len(wanted))
        query = query.order_by(_ct.phone).limit(limit)
        with self._tx("contacts_by_tags") as conn:
            phones = list(conn.execute(query).scalars())
            found: Dict[str, Contact] = {}
            for chunk in chunks(phones):
                rows = conn.execute(sa.select(contacts).where(contacts.c.phone.in_(chunk)))
                found.update({row["phone"]: _row_contact(row) for row in rows.mappings()})
        return [found[p] for p in phones if p in found]

    def dnd_contacts(self, phones: Sequence[str], now: dt.datetime) -> Dict[str, Contact]:
        """Contacts among ``phones`` whose do-not-disturb can still apply (one query per 500)."""
        now = c.require_utc(now, "now")
        rule = sa.or_(contacts.c.dnd_window.is_not(None),
                      contacts.c.dnd_days != sa.literal_column("'[]'"),
                      contacts.c.dnd_until > now)
        found: Dict[str, Contact] = {}
        with self._tx("dnd_contacts") as conn:
            for chunk in chunks(list(dict.fromkeys(phones))):
                query = sa.select(contacts).where(contacts.c.phone.in_(chunk), rule)
                found.update({row["phone"]: _row_contact(row)
                              for row in conn.execute(query).mappings()})
        return found

    # -- campaigns ----------------------------------------------------------------------------
    def add_campaign(self, campaign: Campaign) -> Campaign:
        """Store a new campaign (a used id raises :class:`StoreError`)."""
        stored = r.normalise_campaign(campaign)
        with self._tx("add_campaign", write=True) as conn:
            if not self._insert_new(conn, campaigns, _campaign_row(stored)):
                raise StoreError(f"campaign {stored.id!r} already exists")
        return stored

    def _campaign(self, conn: Connection, campaign_id: str, lock: bool = False) -> Campaign:
        query = sa.select(campaigns).where(_cp.id == campaign_id)
        row = conn.execute(self._locked(query) if lock else query).mappings().first()
        if row is None:
            raise NotFoundError(f"no campaign {campaign_id!r}")
        return _row_campaign(row)

    def get_campaign(self, campaign_id: str) -> Optional[Campaign]:
        """A campaign by id."""
        with self._tx("get_campaign") as conn:
            row = conn.execute(sa.select(campaigns).where(_cp.id == campaign_id)).mappings()
            found = row.first()
            return _row_campaign(found) if found is not None else None

    def list_campaigns(self, *, statuses: Optional[Sequence[str]] = None) -> List[Campaign]:
        """Campaigns, oldest first."""
        query = sa.select(campaigns).order_by(_cp.created_at, _cp.id)
        if statuses is not None:
            query = query.where(_cp.status.in_(list(statuses)))
        with self._tx("list_campaigns") as conn:
            return [_row_campaign(row) for row in conn.execute(query).mappings()]

    def set_campaign_status(self, campaign_id: str, status: str, *,
                            expected: Sequence[str], now: dt.datetime,
                            error: Optional[str] = None) -> Optional[Campaign]:
        """Compare-and-set of the status."""
        r.check_status(status)
        now = c.require_utc(now, "now")
        with self._tx("set_campaign_status", write=True) as conn:
            campaign = self._campaign(conn, campaign_id, lock=True)
            if campaign.status not in expected:
                return None
            changes = r.status_changes(campaign, status, now, error)
            done = conn.execute(sa.update(campaigns).where(
                _cp.id == campaign_id, _cp.status == campaign.status).values(changes))
            if done.rowcount != 1:
                return None
            return _evolve(campaign, changes)

    def advance_campaign(self, campaign_id: str, *, expected_cursor: Optional[str],
                         new_cursor: Optional[str], materialised: bool, skipped: int,
                         now: dt.datetime) -> bool:
        """Compare-and-set of the cursor while ``running``."""
        now = c.require_utc(now, "now")
        same = _cp.cursor.is_(None) if expected_cursor is None else _cp.cursor == expected_cursor
        stmt = (sa.update(campaigns)
                .where(_cp.id == campaign_id, _cp.status == "running", same)
                .values(cursor=new_cursor, materialised=materialised,
                        skipped=_cp.skipped + skipped, updated_at=now))
        with self._tx("advance_campaign", write=True) as conn:
            return bool(conn.execute(stmt).rowcount == 1)

    def update_campaign(self, campaign_id: str, *, job_ids: Optional[Sequence[int]] = None,
                        last_error: Optional[str] = None, clear_error: bool = False,
                        now: dt.datetime) -> Campaign:
        """Record gateway job ids and/or an error note."""
        now = c.require_utc(now, "now")
        changes: Dict[str, Any] = {"updated_at": now}
        if job_ids is not None:
            changes["job_ids"] = [int(j) for j in job_ids]
        if last_error is not None or clear_error:
            changes["last_error"] = last_error
        with self._tx("update_campaign", write=True) as conn:
            campaign = self._campaign(conn, campaign_id, lock=True)
            conn.execute(sa.update(campaigns).where(_cp.id == campaign_id).values(changes))
        return _evolve(campaign, changes)

    def cancel_campaign_messages(self, campaign_id: str, reason: str, now: dt.datetime) -> int:
        """Cancel the campaign's unclaimed messages (one statement)."""
        now = c.require_utc(now, "now")
        stmt = (sa.update(messages)
                .where(_m.campaign_id == campaign_id, _m.batch_id.is_(None),
                       _m.direction == Direction.OUTBOUND.value,
                       _m.state.in_([s.value for s in c.CANCELABLE]))
                .values(state=State.CANCELED.value, error_code="campaign", error_text=reason,
                        updated_at=now))
        with self._tx("cancel_campaign_messages", write=True) as conn:
            return int(conn.execute(stmt).rowcount)

    def campaign_totals(self, campaign_ids: Sequence[str]) -> Dict[str, CampaignTotals]:
        """Totals per campaign: three aggregate queries, whatever the number of messages."""
        ids = list(dict.fromkeys(campaign_ids))
        rows: Dict[str, Dict[str, Tuple[int, Optional[Decimal]]]] = {k: {} for k in ids}
        replies: Dict[str, int] = {}
        optouts: Dict[str, int] = {}
        reply, original = messages.alias("reply"), messages.alias("original")
        audit = blacklist_audit.c
        with self._tx("campaign_totals") as conn:
            for chunk in chunks(ids):
                by_state = (sa.select(_m.campaign_id, _m.state, sa.func.count(),
                                      sa.func.sum(_m.cost))
                            .where(_m.campaign_id.in_(chunk),
                                   _m.direction == Direction.OUTBOUND.value)
                            .group_by(_m.campaign_id, _m.state))
                for campaign_id, state, count, cost in conn.execute(by_state):
                    rows[campaign_id][state] = (int(count), cost)
                answered = (sa.select(original.c.campaign_id, sa.func.count())
                            .select_from(reply.join(original,
                                                    reply.c.in_reply_to == original.c.id))
                            .where(original.c.campaign_id.in_(chunk),
                                   reply.c.direction == Direction.INBOUND.value)
                            .group_by(original.c.campaign_id))
                replies.update({k: int(n) for k, n in conn.execute(answered)})
                opted = (sa.select(audit.campaign_id, sa.func.count())
                         .where(audit.campaign_id.in_(chunk), audit.action == "add",
                                audit.source.startswith(OPTOUT_SOURCE_PREFIX,
                                                        autoescape=True))
                         .group_by(audit.campaign_id))
                optouts.update({k: int(n) for k, n in conn.execute(opted)})
        return {k: r.totals_from_states(k, rows[k], replies.get(k, 0), optouts.get(k, 0))
                for k in ids}

    # -- audited blacklist ----------------------------------------------------------------------
    def blacklist_change(self, phone: str, action: str, *, reason: str, source: str,
                         sync_to: Sequence[str] = (), campaign_id: Optional[str] = None,
                         now: Optional[dt.datetime] = None) -> bool:
        """Change the list, audit it and queue its sync in one transaction."""
        r.check_action(action)
        at = c.require_utc(now or utcnow(), "now")
        with self._tx("blacklist_change", write=True) as conn:
            if action == "add":
                row = {"phone": phone, "reason": reason, "source": source, "created_at": at}
                if not self._insert_new(conn, blacklist, row):
                    return False
            else:
                done = conn.execute(sa.delete(blacklist).where(blacklist.c.phone == phone))
                if done.rowcount != 1:
                    return False
            conn.execute(sa.insert(blacklist_audit).values(
                phone=phone, action=action, source=source, reason=reason,
                campaign_id=campaign_id, created_at=at))
            targets = list(dict.fromkeys(sync_to))
            if targets:
                conn.execute(sa.insert(blacklist_sync), [
                    {"phone": phone, "action": action, "provider": p, "status": "pending",
                     "attempts": 0, "created_at": at, "next_attempt_at": at,
                     "acknowledged_at": None, "last_error": None} for p in targets])
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
        query = sa.select(blacklist_audit).order_by(blacklist_audit.c.id.desc()).limit(limit)
        if phone is not None:
            query = query.where(blacklist_audit.c.phone == phone)
        with self._tx("blacklist_audit") as conn:
            found = [_row_audit(row) for row in conn.execute(query).mappings()]
        return list(reversed(found))

    def pending_blacklist_sync(self, provider: str, now: dt.datetime,
                               limit: int = 1000) -> List[BlacklistSyncItem]:
        """Pending items of ``provider`` due at ``now``, in queue order."""
        now = c.require_utc(now, "now")
        query = (sa.select(blacklist_sync)
                 .where(_bs.status == "pending", _bs.provider == provider,
                        _bs.next_attempt_at <= now)
                 .order_by(_bs.id).limit(limit))
        with self._tx("pending_blacklist_sync") as conn:
            return [_row_sync(row) for row in conn.execute(query).mappings()]

    def finish_blacklist_sync(self, ids: Sequence[int], status: str, now: dt.datetime,
                              error: Optional[str] = None) -> None:
        """Mark items acknowledged, refused or skipped."""
        r.check_sync_status(status)
        now = c.require_utc(now, "now")
        values: Dict[str, Any] = {"status": status, "acknowledged_at": now,
                                  "attempts": _bs.attempts + 1}
        if error is not None:
            values["last_error"] = error
        with self._tx("finish_blacklist_sync", write=True) as conn:
            for chunk in chunks(list(ids)):
                conn.execute(sa.update(blacklist_sync)
                             .where(_bs.id.in_(chunk), _bs.status == "pending").values(values))

    def retry_blacklist_sync(self, ids: Sequence[int], error: str,
                             retry_at: dt.datetime) -> None:
        """Count a failed attempt and try again at ``retry_at``."""
        retry_at = c.require_utc(retry_at, "retry_at")
        with self._tx("retry_blacklist_sync", write=True) as conn:
            for chunk in chunks(list(ids)):
                conn.execute(sa.update(blacklist_sync)
                             .where(_bs.id.in_(chunk), _bs.status == "pending")
                             .values(attempts=_bs.attempts + 1, last_error=error,
                                     next_attempt_at=retry_at))

    def blacklist_sync_items(self, *, status: Optional[str] = None,
                             limit: int = 1000) -> List[BlacklistSyncItem]:
        """Sync items, newest first."""
        query = sa.select(blacklist_sync).order_by(_bs.id.desc()).limit(limit)
        if status is not None:
            query = query.where(_bs.status == status)
        with self._tx("blacklist_sync_items") as conn:
            return [_row_sync(row) for row in conn.execute(query).mappings()]

    def blacklist_sync_backlog(self) -> Dict[str, int]:
        """Pending items per provider (one aggregate query)."""
        query = (sa.select(_bs.provider, sa.func.count()).where(_bs.status == "pending")
                 .group_by(_bs.provider))
        with self._tx("blacklist_sync_backlog") as conn:
            return {p: int(n) for p, n in conn.execute(query)}

    # -- key/value state ------------------------------------------------------------------------
    def get_state(self, key: str) -> Optional[str]:
        """A piece of state, or ``None``."""
        with self._tx("get_state") as conn:
            value = conn.execute(sa.select(kv_state.c.value).where(kv_state.c.key == key))
            return value.scalar()

    def set_state(self, key: str, value: str) -> None:
        """Write a piece of state (insert or update)."""
        with self._tx("set_state", write=True) as conn:
            conn.execute(upsert(kv_state, kv_state.c.key, postgres=self._pg),
                         {"key": key, "value": value, "updated_at": utcnow()})

    def list_state(self, prefix: str) -> Dict[str, str]:
        """Every key starting with ``prefix``."""
        query = sa.select(kv_state.c.key, kv_state.c.value)
        with self._tx("list_state") as conn:
            return {k: v for k, v in conn.execute(query) if k.startswith(prefix)}

    def reserve_slot(self, key: str, seconds: float, now: float) -> float:
        """Reserve ``seconds`` of the time line ``key`` in one statement (an upsert that
        moves the stored end to ``max(end, now) + seconds`` and returns it), so processes
        racing for it each get their own slot; the slot's start."""
        insert = postgresql.insert(kv_state) if self._pg else sqlite.insert(kv_state)
        later = sa.func.greatest if self._pg else sa.func.max
        end = later(sa.cast(kv_state.c.value, sa.Float), now) + seconds
        stamp = utcnow()
        stmt = (insert.values(key=key, value=repr(now + seconds), updated_at=stamp)
                .on_conflict_do_update(index_elements=[kv_state.c.key],
                                       set_={"value": sa.cast(end, sa.Text),
                                             "updated_at": stamp})
                .returning(kv_state.c.value))
        with self._tx("reserve_slot", write=True) as conn:
            value = conn.execute(stmt).scalar_one()
        return float(value) - seconds


def _evolve(campaign: Campaign, changes: Mapping[str, Any]) -> Campaign:
    """``campaign`` with the column ``changes`` an update wrote."""
    fields = dict(changes)
    if "job_ids" in fields:
        fields["job_ids"] = tuple(fields["job_ids"])
    return attrs.evolve(campaign, **fields)
