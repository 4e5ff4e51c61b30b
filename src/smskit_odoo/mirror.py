"""The Odoo side of each message: its row in ``sms.message`` (or ``sms.sms``), kept in step.

* New outbound rows are created in one ``create`` call with a list of values (all phones of
  the call), before anything is sent. When Odoo refuses the batch, it is split until the
  refused records are alone: the others are created, each refused one is reported.
* Later changes (results, status events) are written in one call for many records with
  different values: inside Odoo (an adapter with ``write_many``, the addon's) one ``write``
  per record in one savepoint, after one look-up of all the records; over RPC ``load`` (``.id``
  names the record), with the user's time zone forced to UTC. Where ``write_many`` is refused
  (a record gone, a constraint), ``load`` writes the rows again and says which it refuses.
  ``load`` reports every database error as a message, a concurrent update ("could not
  serialize access") too: that one raises :class:`~smskit_odoo.errors.OdooTransientError` (the
  session writes the batch again in a fresh transaction) instead of refusing the row. Before
  writing, one ``search_read`` reads what Odoo has for those records and for the provider ids
  being written, so that a state never moves backwards in Odoo (a late
  result, or a person's cancel, wins over nothing), a provider id is never overwritten and
  never given to a second record.
* The write that records a send's result, a row moving from ``outgoing`` to ``sent``, is made
  with Odoo's ``mail_notrack`` context unless ``track_sent``: the row was committed
  ``outgoing`` before the gateway was called, so Odoo's field tracking (``state`` is tracked on
  the users' ``sms.message``) would log one chatter message and one tracking value per SMS
  for a change the users' own modules, which create the row and write its result in one
  transaction, never log. Every later change (``sent`` -> ``delivered``, a failure, a cancel)
  is tracked as before.

On Odoo's stock ``sms.sms`` rows are written only once the gateway answered: Odoo's own SMS
queue (``sms.sms._process_queue``, the "SMS: SMS Queue Manager" cron and the composer) sends
every ``outgoing`` ``sms.sms`` through IAP, so an ``outgoing`` row from smskit would be sent a
second time by Odoo. The sidecar holds the message before the send.

A message Odoo itself asked to send (:mod:`smskit_odoo.origins`: an ``sms.sms`` of Odoo's,
an agent's ChatRoom reply) has Odoo records of its own, which
:class:`~smskit_odoo.origins.Origins` keeps in step after each batch of writes here. Where the
message model is ``sms.sms`` itself, Odoo's own row is that message's row: no second one is
created. Where the model posts a chatter note for each new row with a partner (the users'
``sms_base_sr``), the row of an Odoo ``sms.sms`` gets its partner on its next write instead
of at creation: Odoo's chatter already shows that SMS, a second note would repeat it.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import attrs

from smskit.models import Direction, Message, State
from smskit.store.base import Store
from smskit_odoo.adapter import TRANSIENT_TEXTS, to_odoo_datetime
from smskit_odoo.errors import OdooTransientError, OdooValidationError
from smskit_odoo.journal import Link, Op
from smskit_odoo.origins import ODOO_SMS, Origins, origin_of
from smskit_odoo.schema import OdooSchema
from smskit_odoo.session import HandlerResult, OdooSession, isolate

__all__ = ["Mirror"]

log = logging.getLogger(__name__)

#: Concepts a later write may change (the others are set once, at creation).
MUTABLE = ("state", "provider_id", "request_id", "scheduled_at", "sent_at", "delivered_at",
           "cost", "error_text", "error_code", "batch_id", "partner")
_MANY2ONE = ("partner", "parent")
_STOCK_ERRORS = {"blacklisted": "sms_blacklist", "policy": "sms_blacklist",
                 "invalid_phone": "sms_number_format"}
_MAX_LOAD_ROUNDS = 3


def _m2o(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if value else False
    return value


class Mirror:
    """Builds Odoo values from :class:`~smskit.models.Message` and writes them in batches."""

    def __init__(self, session: OdooSession, sidecar: Store, *,
                 create_partners: str = "inbound", origins: Optional[Origins] = None,
                 track_sent: bool = False) -> None:
        if create_partners not in ("inbound", "always", "never"):
            raise ValueError("create_partners must be 'inbound', 'always' or 'never', got "
                             f"{create_partners!r}")
        self.session = session
        self.sidecar = sidecar
        self.create_partners = create_partners
        #: Keeps the Odoo records messages were sent for in step (``None``: nobody does).
        self.origins = origins
        #: Whether Odoo tracks the ``outgoing`` -> ``sent`` write (see the module docs).
        self.track_sent = track_sent

    @property
    def schema(self) -> OdooSchema:
        """The session's schema."""
        return self.session.schema

    # -- values ------------------------------------------------------------------------------
    def wants_row(self, message: Message) -> bool:
        """Whether ``message`` has (or will have) a row in Odoo now."""
        schema = self.schema
        if message.direction is Direction.INBOUND:
            return schema.has("direction") and schema.direction_value(True) is not None
        if schema.model == ODOO_SMS and _odoo_sms(message):
            return False  # Odoo's own row is this message's row (kept by the origins)
        # On sms.sms, Odoo's own queue would send an outgoing row (see the module docs).
        return not (schema.model == "sms.sms" and message.state in (State.DRAFT,
                                                                       State.OUTGOING))

    def creates_partner_for(self, message: Message) -> bool:
        """Whether a missing partner is created for ``message`` (``create_partners``)."""
        if self.create_partners == "always":
            return True
        return self.create_partners == "inbound" and message.direction is Direction.INBOUND

    def values(self, message: Message, link: Link, parent: Optional[int] = None
               ) -> Dict[str, Any]:
        """Concept -> Python value of everything smskit knows about ``message``."""
        schema = self.schema
        values: Dict[str, Any] = {
            "phone": message.phone, "body": message.body,
            "state": schema.states[message.state],
            "direction": schema.direction_value(message.direction is Direction.INBOUND),
            "partner": link.partner_id, "parent": parent,
            "provider_id": message.provider_message_id,
            "request_id": message.provider_request_id,
            "scheduled_at": message.scheduled_at, "sent_at": message.sent_at,
            "delivered_at": message.delivered_at,
            "cost": message.cost if message.direction is Direction.OUTBOUND else None,
            "error_text": message.error_text, "error_code": self._error_code(message),
            "our_id": message.id, "batch_id": message.batch_id,
        }
        return {k: v for k, v in values.items() if schema.has(k)}

    def _error_code(self, message: Message) -> Optional[str]:
        schema = self.schema
        if schema.field_types.get("error_code") != "selection":
            return message.error_code
        if not message.state.is_final or message.state is State.DELIVERED:
            return None
        wanted = _STOCK_ERRORS.get(message.error_code or "", "sms_server")
        if schema.selection_has("error_code", wanted):
            return wanted
        return "sms_server" if schema.selection_has("error_code", "sms_server") else None

    def create_vals(self, values: Mapping[str, Any]) -> Dict[str, Any]:
        """Values for ``create`` (Odoo field names, Odoo shapes)."""
        out: Dict[str, Any] = {}
        for concept, value in values.items():
            if value is None:
                continue
            out[self.schema.fields[concept]] = _odoo_value(value)
        return out

    # -- creation ----------------------------------------------------------------------------
    def create(self, rows: Sequence[Tuple[Message, Link, Optional[int]]]
               ) -> Tuple[Dict[str, int], Dict[str, str]]:
        """Create the rows in one call (split only around refused records): our id -> Odoo
        id, and our id -> Odoo's refusal."""
        model = self.schema.model

        late_partner = self.schema.posts_own_notes

        def call(batch: Sequence[Tuple[Message, Link, Optional[int]]]) -> Sequence[Any]:
            vals = []
            for m, link, parent in batch:
                values = self.values(m, link, parent)
                if late_partner and _odoo_sms(m):
                    values.pop("partner", None)  # set on the next write: no second note
                vals.append(self.create_vals(values))
            return list(self.session.adapter.execute(model, "create", vals))

        ok, bad = isolate(rows, call)
        created = {row[0].id: int(odoo_id) for row, odoo_id in ok}
        refused = {row[0].id: error for row, error in bad}
        return created, refused

    # -- the journal's "mirror" ops ---------------------------------------------------------------
    def handle(self, ops: List[Op]) -> HandlerResult:
        """Bring the Odoo rows of these messages up to the sidecar's state."""
        result = HandlerResult()
        ids = list(dict.fromkeys(op.message_id for op in ops if op.message_id))
        op_of: Dict[str, List[int]] = {}
        for op in ops:
            op_of.setdefault(op.message_id or "", []).append(op.id)
        messages = {m.id: m for m in self.sidecar.get_many(ids)}
        links = self.session.journal.links(ids)
        result.done.extend(op.id for op in ops if op.message_id not in messages)
        to_create: List[Message] = []
        to_update: List[Message] = []
        for mid in ids:
            message = messages.get(mid)
            if message is None:
                continue
            link = links.get(mid) or Link(message_id=mid)
            if link.odoo_id:
                to_update.append(message)
            elif self.wants_row(message):
                to_create.append(message)
            else:
                result.done.extend(op_of[mid])
        failed: Dict[str, str] = {}
        if to_create:
            failed.update(self._create_later(to_create, links))
        if to_update:
            failed.update(self._update(to_update, links))
        if self.origins is not None:
            self.origins.sync(list(messages.values()))
        for mid in ids:
            if mid not in messages:
                continue
            if mid in failed:
                first, *rest = op_of[mid]
                result.failed[first] = failed[mid]
                result.done.extend(rest)
            else:
                result.done.extend(op_of[mid])
        return result

    def _create_later(self, messages: List[Message], links: Dict[str, Link]) -> Dict[str, str]:
        """Rows created from the journal: replies, and stock rows once sent."""
        partner_less = [m for m in messages
                        if not (links.get(m.id) and links[m.id].partner_id)]
        partners: Dict[str, int] = {}
        if partner_less:
            partners = self.session.partners.find([m.phone for m in partner_less])
            missing = [m.phone for m in partner_less if m.phone not in partners
                       and self.creates_partner_for(m)]
            if missing:
                partners.update(self.session.partners.find_or_create(missing))
        parents = self.session.journal.links(m.in_reply_to for m in messages if m.in_reply_to)
        rows: List[Tuple[Message, Link, Optional[int]]] = []
        for m in messages:
            link = links.get(m.id) or Link(message_id=m.id)
            if not link.partner_id and m.phone in partners:
                link = attrs.evolve(link, partner_id=partners[m.phone])
            parent = parents.get(m.in_reply_to or "")
            rows.append((m, link, parent.odoo_id if parent else None))
        created, refused = self.create(rows)
        self.session.journal.put_links([
            attrs.evolve(link, odoo_id=created[m.id], odoo_state=self.schema.states[m.state])
            for m, link, _ in rows if m.id in created])
        links.update({m.id: attrs.evolve(link, odoo_id=created.get(m.id)) for m, link, _ in rows})
        return refused

    def _update(self, messages: List[Message], links: Dict[str, Link]) -> Dict[str, str]:
        """One read of what Odoo has, then ``load`` with the rows that change."""
        schema = self.schema
        model = schema.model
        columns = [c for c in MUTABLE if schema.has(c)]
        fields = [schema.fields[c] for c in columns]
        odoo_ids = {m.id: int(links[m.id].odoo_id or 0) for m in messages}
        pids = sorted({m.provider_message_id for m in messages if m.provider_message_id})
        domain: List[Any] = [("id", "in", sorted(odoo_ids.values()))]
        if pids and schema.has("provider_id"):
            domain = ["|", *domain, (schema.fields["provider_id"], "in", pids)]
        rows = self.session.adapter.execute(model, "search_read", domain, fields=fields)
        current = {int(r["id"]): r for r in rows}
        owners: Dict[str, int] = {}
        if schema.has("provider_id"):
            for r in rows:
                pid = r.get(schema.fields["provider_id"])
                if pid:
                    owners.setdefault(str(pid), int(r["id"]))
        # (message, Odoo id, values, the concepts that change), per tracking: the send's
        # result untracked (see the module docs), every other change tracked
        groups: Dict[bool, List[Tuple[Message, int, Dict[str, Any], Set[str]]]] = {
            True: [], False: []}
        gone: Dict[str, str] = {}
        state_field = schema.fields["state"] if schema.has("state") else None
        untracked = None if self.track_sent or state_field is None else (
            schema.states[State.OUTGOING], schema.states[State.SENT])
        for m in messages:
            oid = odoo_ids[m.id]
            if oid not in current:
                gone[m.id] = f"{model} record {oid} no longer exists in Odoo"
                continue
            wanted = self._next_values(m, links[m.id], current[oid], owners, oid)
            if wanted is not None:
                move = (current[oid].get(state_field or ""), wanted[0].get("state"))
                groups[move != untracked].append((m, oid, wanted[0], wanted[1]))
        refused: Dict[str, str] = {}
        for tracked, group in groups.items():
            if not group:
                continue
            # only the columns some row changes: each column costs work on every row
            changing = set().union(*(changed for _, _, _, changed in group))
            context: Dict[str, Any] = {"tz": "UTC"}
            if not tracked:
                context["mail_notrack"] = True
            refused.update(self._write([c for c in columns if c in changing],
                                       [(m, oid, values) for m, oid, values, _ in group],
                                       context))
        targets = groups[True] + groups[False]
        refused.update(gone)
        self.session.journal.put_links([
            attrs.evolve(links[m.id], odoo_state=str(values["state"]))
            for m, _, values, _ in targets if m.id not in refused and "state" in values])
        return refused

    def _next_values(self, message: Message, link: Link, row: Mapping[str, Any],
                     owners: Mapping[str, int], oid: int
                     ) -> Optional[Tuple[Dict[str, Any], Set[str]]]:
        """The row's values after the write and the concepts that change, or ``None`` when
        nothing changes."""
        schema = self.schema
        desired = self.values(message, link)
        out: Dict[str, Any] = {}
        changed: Set[str] = set()
        for concept in MUTABLE:
            if not schema.has(concept):
                continue
            field = schema.fields[concept]
            have = _m2o(row.get(field)) if concept in _MANY2ONE else row.get(field)
            want = desired.get(concept)
            value = have
            if concept == "state":
                # forward only: what Odoo shows is never moved back (a late result, a cancel)
                if want != have and schema.rank(want) > schema.rank(have) \
                        and schema.rank(have) < 3:
                    value = want
            elif concept == "provider_id":
                owner = owners.get(str(want)) if want else None
                if want and not have and owner in (None, oid):
                    value = want
                elif want and not have:
                    log.warning("provider id %s is already on %s record %s; not written on %s",
                                want, schema.model, owner, oid)
            elif want not in (None, ""):
                value = _odoo_value(want)
                if concept == "cost" and have not in (None, False):
                    value = float(value)
            if not _same(value, have):
                changed.add(concept)
            out[concept] = value
        return (out, changed) if changed else None

    def _write(self, columns: Sequence[str],
               targets: List[Tuple[Message, int, Dict[str, Any]]],
               context: Mapping[str, Any]) -> Dict[str, str]:
        """Write the rows (``write_many`` where the adapter has it, else ``load``); a refused
        row is left out and reported, the others written."""
        write_many = getattr(self.session.adapter, "write_many", None)
        if callable(write_many):
            fields = {c: self.schema.fields[c] for c in columns}
            try:
                write_many(self.schema.model,
                           [(oid, {fields[c]: _write_value(values.get(c)) for c in columns})
                            for _, oid, values in targets], context=dict(context))
                return {}
            except OdooValidationError as exc:
                # a record gone or a row refused: load says which, and writes the others
                log.info("%s: writing %d rows one call failed (%s); load tells which rows",
                         self.schema.model, len(targets), exc)
        return self._load(columns, targets, context)

    def _load(self, columns: Sequence[str], targets: List[Tuple[Message, int, Dict[str, Any]]],
              context: Mapping[str, Any]) -> Dict[str, str]:
        """``load`` the rows; a refused row is left out and the others loaded again."""
        schema = self.schema
        header = [".id"] + [schema.fields[c] + ("/.id" if c in _MANY2ONE else "")
                            for c in columns]
        refused: Dict[str, str] = {}
        remaining = list(targets)
        for _ in range(_MAX_LOAD_ROUNDS):
            if not remaining:
                return refused
            data = [[str(oid)] + [_import_text(values.get(c)) for c in columns]
                    for _, oid, values in remaining]
            answer = self.session.adapter.execute(schema.model, "load", header, data,
                                                  context=dict(context))
            if answer.get("ids"):
                return refused
            errors = [msg for msg in answer.get("messages") or [] if msg.get("type") == "error"]
            for msg in errors:
                # load turns every database error into a message, a concurrent update too:
                # that one is no refusal of the row (a fresh transaction writes it)
                text = str(msg.get("message") or "")
                if any(t in text.lower() for t in TRANSIENT_TEXTS):
                    raise OdooTransientError(f"{schema.model}.load met a concurrent "
                                             f"transaction: {text.strip()}")
            bad: Set[int] = {int(msg["record"]) for msg in errors
                             if isinstance(msg.get("record"), int)}
            if not bad:  # Odoo named no row: every row is refused with its message
                text = "; ".join(str(msg.get("message")) for msg in errors) or "load refused"
                refused.update({m.id: text for m, _, _ in remaining})
                return refused
            for index in sorted(bad):
                text = "; ".join(str(msg.get("message")) for msg in errors
                                 if msg.get("record") == index)
                refused[remaining[index][0].id] = text
            remaining = [t for i, t in enumerate(remaining) if i not in bad]
        refused.update({m.id: "Odoo kept refusing the rows" for m, _, _ in remaining})
        return refused


def _odoo_sms(message: Message) -> bool:
    """Whether ``message`` is one of Odoo's own ``sms.sms`` sent through smskit."""
    origin = origin_of(message)
    return origin is not None and origin[0] == ODOO_SMS


def _odoo_value(value: Any) -> Any:
    import datetime as dt

    if isinstance(value, dt.datetime):
        return to_odoo_datetime(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _write_value(value: Any) -> Any:
    """A value as ``write`` takes it (``False`` clears)."""
    return False if value is None or value == "" else value


def _import_text(value: Any) -> str:
    """A value as ``load`` reads it (strings; empty clears)."""
    if value is None or value is False:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if a in (None, False, "") and b in (None, False, ""):
        return True
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 1e-9
        except (TypeError, ValueError):
            return False
    return bool(a == b)
