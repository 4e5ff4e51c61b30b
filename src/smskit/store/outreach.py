"""What campaigns, contacts, the audited blacklist and its gateway sync persist.

:class:`OutreachStore` is a second protocol, next to :class:`~smskit.store.base.Store`: the
built-in stores (memory, SQLite, PostgreSQL) implement both. A third-party store that only
implements ``Store`` still sends and receives; the features here are then unavailable
(:class:`smskit.SmsKit` falls back to the plain blacklist, without audit or sync).

Guarantees both built-in stores give (the ``outreach`` part of the store conformance suite,
:mod:`smskit.testing.stores`, checks them on each):

* :meth:`OutreachStore.blacklist_change` changes the local list, appends an audit line and
  queues one gateway sync item per provider named, all in **one transaction**; a change that
  changes nothing (adding a listed number) writes nothing and returns ``False``.
* :meth:`Store.claim_batch` never claims a message of a campaign whose status is in
  :data:`HELD_STATUSES` (``paused``, ``canceled``): pausing holds the rest of a campaign
  without touching its messages.
* :meth:`OutreachStore.advance_campaign` is a compare-and-set on the cursor that only succeeds
  while the campaign is ``running``, so a chunk is counted once even with several workers.
* :meth:`OutreachStore.campaign_totals` and the other counts are aggregate queries: a fixed
  number of queries whatever the number of messages.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.models import utcnow

__all__ = [
    "ACTIONS",
    "BlacklistAuditEntry",
    "BlacklistSyncItem",
    "CAMPAIGN_STATUSES",
    "Campaign",
    "CampaignTotals",
    "Contact",
    "HELD_STATUSES",
    "OutreachStore",
    "PacingStore",
    "SYNC_STATUSES",
]

#: A campaign's life: ``draft`` -> ``scheduled``/``running`` <-> ``paused`` -> ``done``;
#: ``canceled`` from any status but ``done``.
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "done", "canceled")
#: Campaign statuses whose messages :meth:`Store.claim_batch` leaves alone.
HELD_STATUSES = ("paused", "canceled")
#: Blacklist changes.
ACTIONS = ("add", "remove")
#: A gateway sync item is ``pending`` until the gateway acknowledged it, or it was ``refused``
#: (the gateway can never take this number) or ``skipped`` (the provider has no blacklist).
SYNC_STATUSES = ("pending", "acknowledged", "refused", "skipped")


def _tags(value: Iterable[str]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(str(t) for t in value))


def _days(value: Iterable[str]) -> Tuple[str, ...]:
    return tuple(value)


def _mapping(value: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    return dict(value or {})


def _ints(value: Iterable[int]) -> Tuple[int, ...]:
    return tuple(int(v) for v in value)


@attrs.frozen(kw_only=True)
class Contact:
    """A person we may message: E.164 ``phone`` (the key), tags for campaign audiences, template
    ``variables``, and per-recipient do-not-disturb (``dnd_window`` ``"20:00-09:00"`` in the
    installation's time zone, ``dnd_days`` such as ``("sun",)``, and/or ``dnd_until``)."""

    phone: str
    name: Optional[str] = None
    tags: Tuple[str, ...] = attrs.field(default=(), converter=_tags)
    variables: Dict[str, Any] = attrs.field(factory=dict, converter=_mapping)
    dnd_window: Optional[str] = None
    dnd_days: Tuple[str, ...] = attrs.field(default=(), converter=_days)
    dnd_until: Optional[dt.datetime] = None
    created_at: dt.datetime = attrs.field(factory=utcnow)
    updated_at: dt.datetime = attrs.field(factory=utcnow)


@attrs.frozen(kw_only=True)
class Campaign:
    """A named send of one template to an audience (see :mod:`smskit.outreach.campaigns`).

    ``audience`` is JSON data (:mod:`smskit.outreach.audience`); ``cursor`` is where
    materialisation stopped (its meaning depends on the audience's source); ``materialised``
    says every recipient has a message; ``skipped`` counts audience rows that
    had no phone. ``job_ids`` are gateway job ids (Kolmeya's integers) recorded by hand or by
    an integration, used to pause and play the job on the gateway.
    """

    id: str
    name: str
    template: str
    audience: Dict[str, Any] = attrs.field(converter=_mapping)
    variables: Dict[str, Any] = attrs.field(factory=dict, converter=_mapping)
    status: str = "draft"
    provider: Optional[str] = None
    scheduled_at: Optional[dt.datetime] = None
    cursor: Optional[str] = None
    materialised: bool = False
    skipped: int = 0
    job_ids: Tuple[int, ...] = attrs.field(default=(), converter=_ints)
    last_error: Optional[str] = None
    created_at: dt.datetime = attrs.field(factory=utcnow)
    updated_at: dt.datetime = attrs.field(factory=utcnow)
    started_at: Optional[dt.datetime] = None
    finished_at: Optional[dt.datetime] = None


@attrs.frozen(kw_only=True)
class CampaignTotals:
    """Live counts of a campaign's messages, from aggregate queries.

    ``queued``: still ``outgoing`` (due, deferred or held); ``sent``: accepted by the gateway
    (sent or any later state but rejected/canceled); ``failed``: error + expired; ``replies``:
    inbound messages answering one of its messages; ``optouts``: blacklist additions caused by
    such a reply; ``cost``: the exact sum over the accepted ones.
    """

    campaign_id: str
    total: int = 0
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    canceled: int = 0
    replies: int = 0
    optouts: int = 0
    cost: Decimal = Decimal(0)


@attrs.frozen(kw_only=True)
class BlacklistAuditEntry:
    """One change of the local blacklist: who or what (``source``: ``"cli"``, ``"api"``,
    ``"inbound:kolmeya"``, ``"import:optouts.csv"``), when, why, and the campaign whose
    message the opt-out answered (if any)."""

    id: int
    phone: str
    action: str
    source: str
    reason: str
    created_at: dt.datetime
    campaign_id: Optional[str] = None


@attrs.frozen(kw_only=True)
class BlacklistSyncItem:
    """A blacklist change to push to one provider's gateway, retried until acknowledged."""

    id: int
    phone: str
    action: str
    provider: str
    status: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    attempts: int = 0
    acknowledged_at: Optional[dt.datetime] = None
    last_error: Optional[str] = None


@runtime_checkable
class OutreachStore(Protocol):
    """Contacts, campaigns, the audited blacklist with its sync queue, and a small key/value
    state (the last balance seen...)."""

    # -- contacts ---------------------------------------------------------------------------
    def save_contacts(self, contacts: Iterable[Contact]) -> Tuple[int, int]:
        """Insert or replace contacts (by phone) in one transaction: ``(created, updated)``.

        A replaced contact keeps its ``created_at``.
        """
        ...

    def get_contacts(self, phones: Sequence[str]) -> Dict[str, Contact]:
        """The stored contacts among ``phones``, by phone."""
        ...

    def list_contacts(self, *, tag: Optional[str] = None, limit: int = 100,
                      offset: int = 0) -> List[Contact]:
        """Contacts by phone, optionally only those with ``tag``."""
        ...

    def contacts_by_tags(self, tags: Sequence[str], *, match: str = "any",
                         after: Optional[str] = None, limit: int = 1000) -> List[Contact]:
        """Contacts with any (``match="any"``) or all (``"all"``) of ``tags`` whose phone
        sorts after ``after``, by phone, at most ``limit`` (keyset pages)."""
        ...

    def dnd_contacts(self, phones: Sequence[str], now: dt.datetime) -> Dict[str, Contact]:
        """Contacts among ``phones`` with a do-not-disturb rule that can still apply at or
        after ``now`` (one query for a whole chunk)."""
        ...

    # -- campaigns --------------------------------------------------------------------------
    def add_campaign(self, campaign: Campaign) -> Campaign:
        """Store a new campaign (a used id raises :class:`~smskit.errors.StoreError`)."""
        ...

    def get_campaign(self, campaign_id: str) -> Optional[Campaign]:
        """A campaign by id."""
        ...

    def list_campaigns(self, *, statuses: Optional[Sequence[str]] = None) -> List[Campaign]:
        """Campaigns, oldest first, optionally only those in ``statuses``."""
        ...

    def set_campaign_status(self, campaign_id: str, status: str, *,
                            expected: Sequence[str], now: dt.datetime,
                            error: Optional[str] = None) -> Optional[Campaign]:
        """Compare-and-set: move to ``status`` only from one of ``expected``; ``None`` when the
        campaign was in another status (an unknown id raises
        :class:`~smskit.errors.NotFoundError`). ``running`` sets ``started_at`` once;
        ``done``/``canceled`` set ``finished_at``; ``error`` replaces ``last_error``."""
        ...

    def advance_campaign(self, campaign_id: str, *, expected_cursor: Optional[str],
                         new_cursor: Optional[str], materialised: bool, skipped: int,
                         now: dt.datetime) -> bool:
        """Compare-and-set of the materialisation cursor, only while ``running``; adds
        ``skipped``. ``True`` for the one caller that won."""
        ...

    def update_campaign(self, campaign_id: str, *, job_ids: Optional[Sequence[int]] = None,
                        last_error: Optional[str] = None, clear_error: bool = False,
                        now: dt.datetime) -> Campaign:
        """Record gateway job ids (replacing them) and/or an error note."""
        ...

    def cancel_campaign_messages(self, campaign_id: str, reason: str, now: dt.datetime) -> int:
        """Cancel the campaign's messages not yet claimed for sending; how many."""
        ...

    def campaign_totals(self, campaign_ids: Sequence[str]) -> Dict[str, CampaignTotals]:
        """Totals per campaign by aggregate queries (a fixed number, whatever the volume)."""
        ...

    # -- audited blacklist and its gateway sync ------------------------------------------------
    def blacklist_change(self, phone: str, action: str, *, reason: str, source: str,
                         sync_to: Sequence[str] = (), campaign_id: Optional[str] = None,
                         now: Optional[dt.datetime] = None) -> bool:
        """Add (``action="add"``) or remove a number, audit it, and queue one sync item per
        provider of ``sync_to``, in one transaction. ``False`` (and nothing written) when the
        list already was that way."""
        ...

    def blacklist_audit(self, phone: Optional[str] = None, *,
                        limit: int = 1000) -> List[BlacklistAuditEntry]:
        """Audit lines, oldest first (the last ``limit``), optionally of one number."""
        ...

    def pending_blacklist_sync(self, provider: str, now: dt.datetime,
                               limit: int = 1000) -> List[BlacklistSyncItem]:
        """Pending items of ``provider`` due at ``now``, in the order they were queued."""
        ...

    def finish_blacklist_sync(self, ids: Sequence[int], status: str, now: dt.datetime,
                              error: Optional[str] = None) -> None:
        """Mark items ``acknowledged``, ``refused`` or ``skipped`` (one more attempt each)."""
        ...

    def retry_blacklist_sync(self, ids: Sequence[int], error: str,
                             retry_at: dt.datetime) -> None:
        """An attempt failed: count it, keep the error, try again at ``retry_at``."""
        ...

    def blacklist_sync_items(self, *, status: Optional[str] = None,
                             limit: int = 1000) -> List[BlacklistSyncItem]:
        """Sync items, newest first, optionally of one status."""
        ...

    def blacklist_sync_backlog(self) -> Dict[str, int]:
        """Pending items per provider (one aggregate query)."""
        ...

    # -- key/value state ----------------------------------------------------------------------
    def get_state(self, key: str) -> Optional[str]:
        """A small piece of state shared by processes (``None`` when unset)."""
        ...

    def set_state(self, key: str, value: str) -> None:
        """Write a piece of state."""
        ...

    def list_state(self, prefix: str) -> Dict[str, str]:
        """Every key starting with ``prefix`` and its value."""
        ...


@runtime_checkable
class PacingStore(Protocol):
    """A clock shared by every process using the store, to pace them together (a provider's
    rate limit, :mod:`smskit.routing.limits`). The built-in stores have it."""

    def reserve_slot(self, key: str, seconds: float, now: float) -> float:
        """Reserve ``seconds`` of the shared time line ``key``, atomically for every process:
        the slot starts at the later of ``now`` and the end of the last slot reserved, and
        the time line's end moves to the slot's end. Returns the slot's start (times are
        epoch seconds, as ``now`` gives them)."""
        ...
