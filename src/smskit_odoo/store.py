"""The Odoo-backed :class:`~smskit.store.base.Store`: ``SMSKIT_DATABASE_URL=odoo://...``.

Odoo's SMS models cannot give what the pipeline relies on (an atomic claim, batches, the
event history, schedules, a unique idempotency key), and a webhook must be stored even when
Odoo is down. So :class:`OdooStore` is a hybrid:

* a **sidecar** SQL store (SQLite by default, PostgreSQL to scale out) is the record of
  truth for smskit: every guarantee of :mod:`smskit.store.base` comes from it;
* **Odoo** gets what its users look at: one ``sms.message`` (or ``sms.sms``) row per
  message, created ``outgoing`` *before* the gateway is called and moved forward with the
  results and delivery reports; the partner found (or created) by phone; chatter notes on
  sent and on final status; smskit's opt-outs in ``phone.blacklist``, whose numbers smskit
  also refuses;
* the sidecar's **journal** (:mod:`smskit_odoo.journal`) holds every Odoo write not done
  yet, so a status callback or a reply that arrives while Odoo is down is stored, answered
  ``200`` and written to Odoo once it is back.

Sending needs Odoo: :meth:`OdooStore.add_messages` creates the Odoo rows first and stores
nothing when Odoo cannot be reached or refuses access (a clear
:class:`~smskit_odoo.errors.OdooError`), so nothing reaches the gateway without its Odoo row.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import attrs

from smskit.config import Settings
from smskit.errors import ConfigurationError, StoreError, ValidationError
from smskit.models import InboundMessage, Message, SendResult, State, StatusEvent
from smskit.store import rules as c
from smskit.store.analytics import LinkStore, StatsStore
from smskit.store.base import (
    AddOutcome,
    ApplyOutcome,
    BatchInfo,
    BlacklistEntry,
    DayStats,
    EventRecord,
    InboundOutcome,
    Requeue,
    Schedule,
    Store,
)
from smskit.store.outreach import ACTIONS, OutreachStore, PacingStore
from smskit_odoo.adapter import OdooAdapter, OdooUrl, RpcAdapter
from smskit_odoo.errors import OdooError
from smskit_odoo.journal import Journal, Link, Op
from smskit_odoo.mirror import Mirror
from smskit_odoo.origins import ODOO_SMS, Origins, origin_of
from smskit_odoo.session import FlushReport, OdooSession

__all__ = ["DEFAULT_SIDECAR", "OdooStore", "open_session", "open_store", "track_sent"]

log = logging.getLogger(__name__)

#: Where the sidecar lives unless ``odoo_sidecar_url`` (or ``?sidecar=``) says otherwise.
DEFAULT_SIDECAR = "sqlite:///smskit-odoo.db"
#: ``odoo_notes``: which chatter notes smskit posts. ``all``: one when a message is sent and
#: one on its final status; ``final``: only the final one; ``auto`` (default): ``final`` where
#: the message model posts a note of its own for each new message (sms_base_sr), else ``all``.
NOTES = ("auto", "all", "final")
KIND_ODOO_ERROR = "odoo_error"


def track_sent(settings: Settings) -> bool:
    """``odoo_track_sent`` (default false): whether Odoo's field tracking logs the write that
    moves a row from ``outgoing`` to ``sent`` (see :mod:`smskit_odoo.mirror`)."""
    return settings.flag("odoo_track_sent", False)


def _partner_ref(ref: Optional[str]) -> Optional[int]:
    """``"res.partner,7"`` -> 7."""
    if not ref:
        return None
    model, _, rid = ref.partition(",")
    return int(rid) if model.strip() == "res.partner" and rid.strip().isdigit() else None


class OdooStore(Store):
    """A :class:`~smskit.store.base.Store` keeping smskit's state in a sidecar and the
    users' view in Odoo (see the module docs).

    Every method of the Store protocol is defined here (or inherited: ``apply_statuses``
    applies events one by one through :meth:`apply_status`, so each reaches Odoo). The
    optional protocols (campaigns and contacts, link tracking, dashboard stats) are the
    sidecar's, forwarded by methods generated from those protocols (see the end of the
    module); nothing else is forwarded.
    """

    def __init__(self, session: OdooSession, sidecar: Store, *,
                 create_partners: str = "inbound", notes: str = "auto",
                 track_sent: bool = False) -> None:
        if notes not in NOTES:
            raise ValueError(f"odoo_notes must be one of {', '.join(NOTES)}, got {notes!r}")
        self.session = session
        self.sidecar = sidecar
        self.notes = notes
        #: The Odoo records messages were sent for (Odoo's ``sms.sms``, a ChatRoom reply),
        #: kept in step with them (:mod:`smskit_odoo.origins`).
        self.origins = Origins(lambda: session.adapter)
        self.mirror = Mirror(session, sidecar, create_partners=create_partners,
                             origins=self.origins, track_sent=track_sent)
        session.register("mirror", self.mirror.handle)
        session.on_failure(self._report_refusal)

    def __repr__(self) -> str:
        return f"OdooStore({self.session.adapter!r}, sidecar={self.sidecar!r})"

    @property
    def journal(self) -> Journal:
        """The sidecar journal of Odoo writes."""
        return self.session.journal

    # -- Odoo bookkeeping ----------------------------------------------------------------------
    def flush(self, *, raise_errors: bool = False) -> FlushReport:
        """Write every pending Odoo write now (what the worker's cycle does implicitly)."""
        return self.session.flush(force=True, raise_errors=raise_errors)

    def describe(self) -> str:
        """The detected schema, where our id goes and what is degraded."""
        return self.session.schema.describe()

    def _report_refusal(self, op: Op, error: str) -> None:
        log.warning("Odoo refused %s of message %s: %s", op.kind, op.message_id, error)
        if op.message_id and self.sidecar.get(op.message_id) is not None:
            self.sidecar.record_event(op.message_id, KIND_ODOO_ERROR,
                                      f"Odoo refused the {op.kind} write: {error}",
                                      provider="odoo")

    def _mirror_later(self, message_ids: Iterable[str]) -> None:
        # touch: a mirror op being written by another process right now is written again
        self.journal.enqueue_many((("mirror", {}, f"mirror:{mid}", mid)
                                   for mid in dict.fromkeys(message_ids)), touch=True)

    @property
    def sent_notes(self) -> bool:
        """Whether smskit posts a note when a message is sent (see :data:`NOTES`): not where
        the message model already posts one for each new message, which would make two
        notes for one SMS."""
        if self.notes == "auto":
            return not self.session.schema.posts_own_notes
        return self.notes == "all"

    def _notes_for(self, before: Dict[str, Message], after: Sequence[Message]) -> None:
        """Queue the chatter notes the changes call for (one per message and event)."""
        wanted: List[Tuple[Message, str]] = []
        sent_notes = self.sent_notes
        for message in after:
            old = before.get(message.id)
            if old is None or old.state == message.state:
                continue
            origin = origin_of(message)
            if origin is not None and origin[0] == ODOO_SMS:
                continue  # Odoo's chatter shows its own SMS, and its state (the origins)
            if message.state is State.SENT:
                if sent_notes:
                    wanted.append((message, "sent"))
            elif message.state.is_final and not old.state.is_final:
                wanted.append((message, "final"))
        if not wanted:
            return
        links = self.journal.links(m.id for m, _ in wanted)
        for message, event in wanted:
            link = links.get(message.id)
            partner = link.partner_id if link else None
            self.session.note(message.id, event, partner, _note_text(message, event))

    # -- messages ------------------------------------------------------------------------------
    def add_messages(self, messages: Iterable[Message]) -> List[AddOutcome]:
        """Create the Odoo rows (one call), then store the messages in the sidecar.

        Unreachable Odoo or refused access: an :class:`~smskit_odoo.errors.OdooError` and
        nothing stored. A record Odoo refuses (a constraint on one number): that message is
        stored ``rejected`` with Odoo's reason (and never sent); the others go on.
        """
        given = [c.normalise_message(m) for m in messages]
        if not given:
            return []
        self.session.flush()
        schema = self.session.schema
        known = self.journal.by_keys(m.idempotency_key for m in given if m.idempotency_key)
        fresh: List[Message] = []
        seen: Set[str] = set()
        for m in given:
            key = m.idempotency_key
            if key and (key in known or key in seen):
                continue
            if key:
                seen.add(key)
            fresh.append(m)
        self._refuse_taken(fresh)
        partners = self._partners(fresh)
        links = {m.id: Link(message_id=m.id, idempotency_key=m.idempotency_key,
                            partner_id=partners.get(m.id)) for m in fresh}
        rows = [(m, links[m.id], None) for m in fresh if self.mirror.wants_row(m)]
        created, refused = self.mirror.create(rows) if rows else ({}, {})
        # a message refused already (an invalid number) keeps its own reason; the refused
        # row is recorded in its history below
        adjusted = [
            attrs.evolve(m, state=State.REJECTED, error_code="odoo_refused",
                         error_text=f"Odoo refused the {schema.model} record: {refused[m.id]}",
                         scheduled_at=None)
            if m.id in refused and not m.state.is_final else m for m in given]
        try:
            outcomes = self.sidecar.add_messages(adjusted)
        except BaseException:
            self._remove_rows(list(created.values()))
            raise
        kept = {o.message.id for o in outcomes if o.created}
        self._remove_rows([oid for mid, oid in created.items() if mid not in kept])
        self.journal.put_links([
            attrs.evolve(links[mid], odoo_id=created.get(mid),
                         odoo_state=schema.states[State.OUTGOING] if mid in created else None)
            for mid in kept if mid in links])
        for mid, error in refused.items():
            if mid in kept:
                log.warning("Odoo refused the row of message %s: %s", mid, error)
                self.sidecar.record_event(mid, KIND_ODOO_ERROR,
                                          f"Odoo refused the {schema.model} record: {error}",
                                          provider="odoo")
        # The Odoo records of messages that will not be sent now (refused, vetoed, deferred):
        # nothing else moves them until then. Those sent now follow with their results.
        waiting = [o.message for o in outcomes if o.created and origin_of(o.message) is not None
                   and (o.message.state.is_final or o.message.scheduled_at)]
        try:
            self.origins.sync(waiting)
        except OdooError as exc:  # stored: the send goes on; the addon syncs them again after
            log.warning("the Odoo records of %d message(s) not updated yet: %s", len(waiting),
                        exc)
        return outcomes

    def _refuse_taken(self, fresh: Sequence[Message]) -> None:
        """The sidecar's own refusals, before anything is written to Odoo."""
        taken = {m.id for m in self.sidecar.get_many([m.id for m in fresh])}
        for m in fresh:
            if m.id in taken:
                raise c.message_conflict(m, "a message with this id exists")
            if m.provider and m.provider_message_id and self.sidecar.find_by_provider_id(
                    m.provider, m.provider_message_id) is not None:
                raise c.message_conflict(m, f"provider id {m.provider_message_id!r} is taken")

    def _partners(self, fresh: Sequence[Message]) -> Dict[str, int]:
        """Our id -> partner id: the given ``partner_ref``, else found by phone (one search
        for the whole call), created when ``create_partners`` says so."""
        out: Dict[str, int] = {}
        lookup: List[Message] = []
        refs = {m.id: _partner_ref(m.partner_ref) for m in fresh}
        given = sorted({r for r in refs.values() if r})
        alive = set(self.session.adapter.execute("res.partner", "search",
                                                 [("id", "in", given)])) if given else set()
        for m in fresh:
            ref = refs[m.id]
            if ref and ref in alive:
                out[m.id] = ref
            elif m.phone.startswith("+"):
                if ref:
                    log.warning("message %s names %s, which Odoo does not have; the partner "
                                "is looked up by phone", m.id, m.partner_ref)
                lookup.append(m)
        if not lookup:
            return out
        directory = self.session.partners
        found = directory.find([m.phone for m in lookup])
        create = [m.phone for m in lookup if m.phone not in found
                  and self.mirror.creates_partner_for(m) and m.state is State.OUTGOING]
        if create:
            found.update(directory.find_or_create(create))
        out.update({m.id: found[m.phone] for m in lookup if m.phone in found})
        return out

    def _remove_rows(self, odoo_ids: Sequence[int]) -> None:
        """Undo rows of messages the sidecar did not keep (best effort, logged)."""
        if not odoo_ids:
            return
        try:
            self.session.adapter.execute(self.session.schema.model, "unlink", list(odoo_ids))
        except OdooError as exc:
            log.warning("could not remove %d Odoo rows of messages not stored: %s",
                        len(odoo_ids), exc)

    def get(self, message_id: str) -> Optional[Message]:
        """A message by our id (from the sidecar)."""
        return self.sidecar.get(message_id)

    def get_many(self, message_ids: Sequence[str]) -> List[Message]:
        """Messages by our ids, in order."""
        return self.sidecar.get_many(message_ids)

    def find_by_provider_id(self, provider: str, provider_message_id: str) -> Optional[Message]:
        """A message by the provider's id."""
        return self.sidecar.find_by_provider_id(provider, provider_message_id)

    def awaiting_status(self, provider: str, sent_before: dt.datetime, *,
                        after: Optional[Tuple[dt.datetime, str]] = None,
                        limit: int = 1000) -> List[Message]:
        """``sent`` messages waiting for a final status (the sidecar's query)."""
        return self.sidecar.awaiting_status(provider, sent_before, after=after, limit=limit)

    def list_messages(self, *, state: Optional[State] = None, phone: Optional[str] = None,
                      campaign_id: Optional[str] = None, limit: int = 100,
                      offset: int = 0) -> List[Message]:
        """Messages, newest first, filtered."""
        return self.sidecar.list_messages(state=state, phone=phone, campaign_id=campaign_id,
                                          limit=limit, offset=offset)

    def count_by_state(self, provider: Optional[str] = None) -> Dict[Tuple[str, State], int]:
        """``{(provider, state): count}`` over outbound messages."""
        return self.sidecar.count_by_state(provider)

    def cancel(self, message_id: str, reason: str) -> Optional[Message]:
        """Cancel a message not yet claimed; its Odoo row follows."""
        if self.sidecar.get(message_id) is not None:
            self._mirror_later([message_id])
        canceled = self.sidecar.cancel(message_id, reason)
        self.session.request_flush()
        return canceled

    # -- dispatch ------------------------------------------------------------------------------
    def claim_batch(self, provider: str, limit: int, now: dt.datetime,
                    batch_id: str) -> Optional[BatchInfo]:
        """Claim due messages (in the sidecar); pending Odoo writes are replayed first."""
        self.session.flush()
        return self.sidecar.claim_batch(provider, limit, now, batch_id)

    def claim_batch_messages(
        self, provider: str, limit: int, now: dt.datetime, batch_id: str
    ) -> Optional[Tuple[BatchInfo, List[Message]]]:
        """:meth:`claim_batch` and the claimed messages (in one sidecar transaction when the
        sidecar can); ``None`` when nothing is due. Pending Odoo writes are replayed first."""
        self.session.flush()
        return self.sidecar.claim_batch_messages(provider, limit, now, batch_id)

    def record_results(self, batch_id: str, results: Sequence[SendResult],
                       now: dt.datetime) -> None:
        """Record the results (the sidecar leaves the batch ``ambiguous`` while a claimed
        message got none), then move the Odoo rows forward in one ``load``; chatter notes
        for the sent and the finished ones."""
        batch = self.sidecar.get_batch(batch_id)
        ids = list(batch.message_ids) if batch is not None else []
        before = {m.id: m for m in self.sidecar.get_many(ids)}
        self._mirror_later(ids)  # before the write: a crash in between still syncs later
        self.sidecar.record_results(batch_id, results, now)
        after = self.sidecar.get_many(ids)
        self._notes_for(before, after)
        self.session.request_flush()

    def release_batch(self, batch_id: str, error_text: str,
                      retry_at: Optional[dt.datetime] = None) -> None:
        """Nothing was sent: back to the queue (the Odoo rows stay ``outgoing``)."""
        self.sidecar.release_batch(batch_id, error_text, retry_at)

    def mark_batch_ambiguous(self, batch_id: str, error_text: str) -> None:
        """The request may have arrived: wait for reconciliation."""
        self.sidecar.mark_batch_ambiguous(batch_id, error_text)

    def requeue_messages(self, batch_id: str, items: Sequence[Requeue], *, reason: str,
                         now: dt.datetime,
                         retry_at: Optional[dt.datetime] = None) -> List[str]:
        """Back to the queue, or moved to another provider, in the sidecar (the Odoo rows
        stay ``outgoing``; Odoo does not record which gateway sends)."""
        return self.sidecar.requeue_messages(batch_id, items, reason=reason, now=now,
                                             retry_at=retry_at)

    def batches(self, *, status: Optional[str] = None,
                older_than: Optional[dt.datetime] = None) -> List[BatchInfo]:
        """Batches by status."""
        return self.sidecar.batches(status=status, older_than=older_than)

    def get_batch(self, batch_id: str) -> Optional[BatchInfo]:
        """One batch with its message ids."""
        return self.sidecar.get_batch(batch_id)

    # -- status and inbound --------------------------------------------------------------------
    def apply_status(self, event: StatusEvent) -> ApplyOutcome:
        """Apply forward only in the sidecar (always, even with Odoo down); the Odoo row and
        a note on a final status follow through the journal."""
        target = self.sidecar.get(event.message_id) if event.message_id else None
        if target is None and event.provider_message_id:
            target = self.sidecar.find_by_provider_id(event.provider, event.provider_message_id)
        if target is not None:
            self._mirror_later([target.id])
        outcome = self.sidecar.apply_status(event)
        if outcome.applied and outcome.message is not None and outcome.old is not None:
            old = attrs.evolve(outcome.message, state=outcome.old)
            self._notes_for({old.id: old}, [outcome.message])
        if target is not None:
            self.session.request_flush()
        return outcome

    def record_inbound(self, inbound: InboundMessage) -> InboundOutcome:
        """Store a reply once (sidecar); its Odoo row (and partner) follow via the journal."""
        outcome = self.sidecar.record_inbound(inbound)
        message = outcome.message
        if outcome.created or not self.journal.links([message.id]):
            reference = f"{inbound.provider}:{inbound.provider_reply_id}"
            self.journal.put_links([Link(message_id=message.id, reply_ref=reference)])
            self._mirror_later([message.id])
            self.session.request_flush()
        return outcome

    def reply_reference(self, message_id: str) -> Optional[str]:
        """``"<provider>:<reply id>"`` of an inbound message (the ChatRoom's msgid)."""
        link = self.journal.links([message_id]).get(message_id)
        return link.reply_ref if link else None

    def history(self, message_id: str) -> List[EventRecord]:
        """Every event recorded for the message."""
        return self.sidecar.history(message_id)

    def orphan_events(self, limit: int = 100) -> List[EventRecord]:
        """Status events that matched no message."""
        return self.sidecar.orphan_events(limit)

    def record_event(self, message_id: Optional[str], kind: str, detail: str, *,
                     provider: Optional[str] = None) -> None:
        """Append a free-form event to a message's history."""
        self.sidecar.record_event(message_id, kind, detail, provider=provider)

    # -- blacklist -----------------------------------------------------------------------------
    def blacklist_add(self, phone: str, reason: str, source: str) -> bool:
        """Add to smskit's list and mirror into ``phone.blacklist``."""
        self.journal.enqueue("blacklist", {"phone": phone, "active": True})
        added = self.sidecar.blacklist_add(phone, reason, source)
        self.session.forget_blacklist()
        self.session.request_flush()
        return added

    def blacklist_remove(self, phone: str) -> bool:
        """Remove from smskit's list and archive it in ``phone.blacklist``."""
        self.journal.enqueue("blacklist", {"phone": phone, "active": False})
        removed = self.sidecar.blacklist_remove(phone)
        self.session.forget_blacklist()
        self.session.request_flush()
        return removed

    def blacklist_change(self, phone: str, action: str, *, reason: str, source: str,
                         sync_to: Sequence[str] = (), campaign_id: Optional[str] = None,
                         now: Optional[dt.datetime] = None) -> bool:
        """The sidecar's audited, synced change, mirrored into ``phone.blacklist`` like
        :meth:`blacklist_add` / :meth:`blacklist_remove` (what :class:`SmsKit` calls)."""
        if action not in ACTIONS:
            # before the journal: a refused call must leave no Odoo write behind
            raise ValidationError(f"blacklist action must be 'add' or 'remove', got {action!r}")
        self.journal.enqueue("blacklist", {"phone": phone, "active": action == "add"})
        changed = bool(self.sidecar.blacklist_change(  # type: ignore[attr-defined]
            phone, action, reason=reason, source=source, sync_to=sync_to,
            campaign_id=campaign_id, now=now))
        self.session.forget_blacklist()
        self.session.request_flush()
        return changed

    def blacklist_from_odoo(self, phone: str, action: str, *, reason: str = "",
                            source: str = "odoo") -> bool:
        """A change made in Odoo's ``phone.blacklist`` (added, archived, deleted), brought into
        smskit's own list (audited, and synced to the gateways as smskit's own changes are),
        without writing it back to Odoo, which has it already."""
        if action not in ACTIONS:
            raise ValidationError(f"blacklist action must be 'add' or 'remove', got {action!r}")
        if isinstance(self.sidecar, OutreachStore):
            return bool(self.sidecar.blacklist_change(phone, action, reason=reason,
                                                      source=source))
        if action == "add":
            return self.sidecar.blacklist_add(phone, reason, source)
        return self.sidecar.blacklist_remove(phone)

    def is_blacklisted(self, phone: str) -> bool:
        """On smskit's list or, asked afresh (one query), on Odoo's ``phone.blacklist``: a
        row archived in Odoo a moment ago no longer blocks the number."""
        return self.sidecar.is_blacklisted(phone) or bool(self.session.odoo_blacklisted([phone]))

    def blacklisted(self, phones: Sequence[str]) -> Set[str]:
        """The subset on either list (Odoo asked afresh: the last check before sending)."""
        return set(self.sidecar.blacklisted(phones)) | self.session.odoo_blacklisted(phones)

    def list_blacklist(self) -> List[BlacklistEntry]:
        """smskit's own entries (``phone.blacklist`` is Odoo's to list)."""
        return self.sidecar.list_blacklist()

    # -- schedules and stats ---------------------------------------------------------------------
    def add_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (sidecar)."""
        return self.sidecar.add_schedule(schedule)

    def get_schedule(self, schedule_id: str) -> Optional[Schedule]:
        """A schedule by id."""
        return self.sidecar.get_schedule(schedule_id)

    def list_schedules(self, *, active_only: bool = False) -> List[Schedule]:
        """All schedules."""
        return self.sidecar.list_schedules(active_only=active_only)

    def remove_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule."""
        return self.sidecar.remove_schedule(schedule_id)

    def due_schedules(self, now: dt.datetime) -> List[Schedule]:
        """Active schedules due at ``now``."""
        return self.sidecar.due_schedules(now)

    def advance_schedule(self, schedule_id: str, expected_next: dt.datetime,
                         new_next: Optional[dt.datetime], ran_at: dt.datetime) -> bool:
        """Compare-and-set of the next run."""
        return self.sidecar.advance_schedule(schedule_id, expected_next, new_next, ran_at)

    def stats_by_day(self, start: Optional[dt.date] = None, end: Optional[dt.date] = None,
                     *, tz: Optional[str] = None) -> List[DayStats]:
        """Per day and provider aggregates (sidecar)."""
        if tz is None:
            return self.sidecar.stats_by_day(start, end)
        return self.sidecar.stats_by_day(start, end, tz=tz)

    def ping(self) -> None:
        """Health: the sidecar answers (webhooks are accepted with Odoo down)."""
        self.sidecar.ping()

    def close(self) -> None:
        """Close the sidecar, the journal and the Odoo connection."""
        self.sidecar.close()
        self.session.close()


def _note_text(message: Message, event: str) -> str:
    """The chatter note (plain text; escaped when posted)."""
    via = f" via {message.provider}" if message.provider else ""
    if event == "sent":
        return f"SMS sent to {message.phone}{via}:\n{message.body}"
    state = message.state
    if state is State.DELIVERED:
        return f"SMS to {message.phone} delivered."
    reason = f": {message.error_text}" if message.error_text else ""
    words = {State.ERROR: "not delivered", State.EXPIRED: "expired",
             State.REJECTED: "rejected", State.CANCELED: "canceled"}
    return f"SMS to {message.phone} {words.get(state, state.value)}{reason}."


# -- construction from settings ----------------------------------------------------------------


def _sidecar(url: str) -> Tuple[Store, Journal]:
    if url.startswith("memory"):
        from smskit.store.memory import MemoryStore

        return MemoryStore(), Journal("sqlite://")
    from smskit.store.sql import SqlStore

    store = SqlStore(url)
    try:
        return store, Journal(url)
    except BaseException:
        store.close()
        raise


def open_session(url: str, settings: Settings, *, adapter: Optional[OdooAdapter] = None,
                 journal: Optional[Journal] = None) -> OdooSession:
    """An :class:`OdooSession` for ``url`` (``odoo://...``) with the settings' options."""
    parsed = OdooUrl.parse(url)
    if journal is None:
        journal = Journal(parsed.options.get("sidecar") or settings.get("odoo_sidecar_url")
                          or DEFAULT_SIDECAR)
    return OdooSession(adapter or RpcAdapter(parsed), journal,
                       region=settings.default_region, model=settings.get("odoo_model"),
                       id_field=settings.get("odoo_id_field"),
                       flush_mode=settings.get("odoo_flush") or "sync")


def _forwarder(name: str) -> Any:
    def forward(self: OdooStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.sidecar, name)(*args, **kwargs)

    forward.__name__ = name
    forward.__doc__ = f"The sidecar store's ``{name}`` (campaigns, contacts, links, stats)."
    return forward


def _protocol_methods(*protocols: type) -> List[str]:
    names: List[str] = []
    for protocol in protocols:
        for klass in protocol.__mro__:
            if klass.__module__.startswith("smskit."):
                names.extend(n for n, v in vars(klass).items()
                             if callable(v) and not n.startswith("_"))
    return names


# The optional store protocols (campaigns and contacts, link tracking, dashboard stats) live in
# the sidecar. They are forwarded by real methods, generated from the protocols so that they
# follow them, and so that isinstance(store, OutreachStore) and friends (runtime-checkable
# protocols look the methods up statically) see an Odoo store as having them.
for _name in _protocol_methods(OutreachStore, LinkStore, StatsStore, PacingStore):
    if _name not in vars(OdooStore):
        setattr(OdooStore, _name, _forwarder(_name))


def open_store(url: str, settings: Settings, *,
               adapter: Optional[OdooAdapter] = None) -> OdooStore:
    """The ``odoo`` store-scheme factory: ``odoo://user:password@host:8069/db``.

    Settings: ``odoo_sidecar_url`` (or ``?sidecar=``; default ``sqlite:///smskit-odoo.db``),
    ``odoo_create_partners`` (``inbound``/``always``/``never``), ``odoo_flush``
    (``sync``/``deferred``), ``odoo_model``, ``odoo_id_field``, ``odoo_notes``,
    ``odoo_track_sent`` (:func:`track_sent`). Nothing is called on Odoo
    until the store is first used.
    """
    parsed = OdooUrl.parse(url)
    sidecar_url = (parsed.options.get("sidecar") or settings.get("odoo_sidecar_url")
                   or DEFAULT_SIDECAR)
    if sidecar_url.startswith("odoo"):
        raise ConfigurationError("odoo_sidecar_url must be a SQL store URL (sqlite:///..., "
                                 "postgresql://...), not an Odoo URL")
    sidecar, journal = _sidecar(sidecar_url)
    try:
        session = open_session(url, settings, adapter=adapter, journal=journal)
        return OdooStore(session, sidecar,
                         create_partners=settings.get("odoo_create_partners") or "inbound",
                         notes=settings.get("odoo_notes") or "auto",
                         track_sent=track_sent(settings))
    except (ValueError, StoreError) as exc:
        sidecar.close()
        journal.close()
        raise ConfigurationError(str(exc)) from exc
