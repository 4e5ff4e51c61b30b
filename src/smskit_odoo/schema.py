"""Which SMS schema an Odoo database has, and how smskit's fields map onto it.

Detected once per connection (four round trips): installed modules (``ir.module.module``),
which candidate models exist (``ir.model``), ``fields_get`` of the message model (type,
relation, selection) and the ``mail.mt_note`` subtype. Three variants are known:

* ``sms_base_sr``: ``sms.message`` with ``provider_message_id``, ``delivered_date``,
  ``direction`` and the eight smskit states;
* ``sms_core_unified``: ``sms.message`` with ``external_id`` and ``delivery_date``, maybe
  without ``direction``;
* ``stock``: Odoo's own ``sms.sms`` (``number``, ``state`` outgoing/sent/error/canceled,
  ``error_code``): a degraded target without a delivered state or a provider id.

Fields are found by name among known candidates, so a renamed module still maps as long as
its names are among them; a message model without a phone, a body or a state, or without the
states ``outgoing``/``sent``/``error``, raises :class:`~smskit_odoo.errors.OdooSchemaError`
naming what is missing. Our message id goes into a field the deployment added
(``x_smskit_id``); failing that into an existing free-text field named by the
``odoo_id_field`` setting; failing that it stays in smskit's sidecar only.
:meth:`OdooSchema.describe` says which.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import attrs

from smskit.models import State
from smskit_odoo.adapter import OdooAdapter
from smskit_odoo.errors import OdooAccessError, OdooSchemaError

__all__ = ["CONCEPTS", "OdooSchema", "detect_schema"]

#: smskit concept -> candidate Odoo field names, in order of preference.
CONCEPTS: Mapping[str, Tuple[str, ...]] = {
    "phone": ("phone", "number", "mobile", "phone_number"),
    "body": ("body", "message", "text", "content"),
    "state": ("state",),
    "partner": ("partner_id",),
    "parent": ("parent_id",),
    "direction": ("direction",),
    "provider_id": ("provider_message_id", "external_id", "kolmeya_message_id"),
    "request_id": ("provider_job_id", "provider_request_id", "job_id"),
    "scheduled_at": ("scheduled_date", "schedule_date"),
    "sent_at": ("sent_date", "send_date"),
    "delivered_at": ("delivered_date", "delivery_date"),
    "cost": ("cost",),
    "error_text": ("error_message", "error_text", "failure_reason"),
    "error_code": ("error_code", "failure_type"),
    "our_id": ("x_smskit_id", "smskit_id", "x_smskit_message_id", "smskit_message_id"),
    "batch_id": ("x_smskit_batch_id", "smskit_batch_id"),
}
#: Existing text fields that hold our message id by convention when no dedicated field
#: exists: sms_base_sr's ``provider_reference`` is "the custom reference sent to the
#: provider", which is exactly our message id (Kolmeya's ``reference``).
ID_CONVENTION = ("provider_reference",)
#: Selection values meaning outbound / inbound in the ``direction`` field.
OUTBOUND_VALUES = ("outgoing", "outbound", "out")
INBOUND_VALUES = ("incoming", "inbound", "in")
_TYPES: Mapping[str, Tuple[str, ...]] = {
    "phone": ("char",), "body": ("text", "char", "html"), "state": ("selection",),
    "partner": ("many2one",), "direction": ("selection",), "provider_id": ("char",),
    "request_id": ("char",), "scheduled_at": ("datetime",), "sent_at": ("datetime",),
    "delivered_at": ("datetime",), "parent": ("many2one",),
    "cost": ("float", "monetary"), "error_text": ("text", "char"),
    "error_code": ("selection", "char"), "our_id": ("char",), "batch_id": ("char",),
}
_REQUIRED = ("phone", "body", "state")
_REQUIRED_STATES = ("outgoing", "sent", "error")
#: Where a state missing from the selection goes instead (the stock variant's degradation).
_FALLBACK: Mapping[State, Tuple[str, ...]] = {
    State.DRAFT: ("draft", "outgoing"),
    State.OUTGOING: ("outgoing",),
    State.SENT: ("sent",),
    State.DELIVERED: ("delivered", "sent"),
    State.ERROR: ("error",),
    State.EXPIRED: ("expired", "error"),
    State.REJECTED: ("rejected", "error"),
    State.CANCELED: ("canceled", "cancel", "error"),
}
MESSAGE_MODELS = ("sms.message", "sms.sms")
OTHER_MODELS = ("phone.blacklist", "mail.message", "acrux.chat.connector",
                "acrux.chat.conversation", "acrux.chat.message")
KNOWN_MODULES = ("sms", "sms_base_sr", "sms_kolmeya", "sms_core_unified", "phone_validation",
                 "mail", "whatsapp_connector", "contact_center_sms", "chatroom_sms_advanced")


@attrs.frozen(kw_only=True)
class OdooSchema:
    """The detected schema: the message model, the field map and the state map."""

    variant: str
    model: str
    modules: FrozenSet[str]
    models: FrozenSet[str]
    fields: Mapping[str, str]
    field_types: Mapping[str, str]
    states: Mapping[State, str]
    selections: Mapping[str, Tuple[str, ...]] = attrs.field(factory=dict)
    id_storage: str = "sidecar"
    note_subtype_id: Optional[int] = None
    degraded: Tuple[str, ...] = ()

    def has(self, concept: str) -> bool:
        """Whether ``concept`` (``provider_id``, ``delivered_at``...) maps to a field."""
        return concept in self.fields

    @property
    def has_blacklist(self) -> bool:
        """Whether ``phone.blacklist`` exists."""
        return "phone.blacklist" in self.models

    @property
    def posts_own_notes(self) -> bool:
        """Whether the message model posts a chatter note on the partner for each new message
        by itself: the users' ``sms_base_sr`` does (its ``sms.message.create``), so smskit's
        own note for a sent message would be a second one for the same SMS."""
        return self.model == "sms.message" and "sms_base_sr" in self.modules

    @property
    def has_acrux(self) -> bool:
        """Whether the ChatRoom models exist."""
        return "acrux.chat.conversation" in self.models

    def rank(self, odoo_state: Any) -> int:
        """How far an Odoo state value is (the lowest smskit rank mapping to it; 0 unknown)."""
        ranks = [s.rank for s, v in self.states.items() if v == odoo_state]
        return min(ranks) if ranks else 0

    def selection_has(self, concept: str, value: str) -> bool:
        """Whether the selection field of ``concept`` offers ``value``."""
        return value in self.selections.get(concept, ())

    def direction_value(self, inbound: bool) -> Optional[str]:
        """The ``direction`` selection value for outbound/inbound (``None`` without one)."""
        offered = self.selections.get("direction", ())
        wanted = INBOUND_VALUES if inbound else OUTBOUND_VALUES
        return next((v for v in wanted if v in offered), None)

    def describe(self) -> str:
        """One paragraph: the variant, the model, where our id goes, what is degraded."""
        where = {
            "sidecar": "smskit's sidecar only (add a char field x_smskit_id to record it in "
                       "Odoo)",
        }.get(self.id_storage, self.id_storage.replace(":", " ", 1))
        lines = [f"Odoo schema {self.variant}: model {self.model}; our message id in {where}."]
        lines += [f"Degraded: {d}." for d in self.degraded]
        return " ".join(lines)


def _search_names(adapter: OdooAdapter, model: str, domain: List[Any], field: str) -> List[str]:
    rows = adapter.execute(model, "search_read", domain, fields=[field])
    return [str(r[field]) for r in rows if r.get(field)]


def detect_schema(adapter: OdooAdapter, *, model: Optional[str] = None,
                  id_field: Optional[str] = None) -> OdooSchema:
    """Look at the database behind ``adapter`` and map smskit onto it.

    ``model`` forces the message model; ``id_field`` names an existing text field to hold our
    message id when the deployment did not add ``x_smskit_id``.
    """
    try:
        modules = frozenset(_search_names(adapter, "ir.module.module",
                                          [("state", "=", "installed"),
                                           ("name", "in", list(KNOWN_MODULES))], "name"))
    except OdooAccessError:
        modules = frozenset()  # a user without Settings rights: go by the models alone
    models = frozenset(_search_names(adapter, "ir.model",
                                     [("model", "in", list(MESSAGE_MODELS + OTHER_MODELS))],
                                     "model"))
    chosen = model or next((m for m in MESSAGE_MODELS if m in models), None)
    if chosen is None or chosen not in models:
        wanted = model or " nor ".join(MESSAGE_MODELS)
        raise OdooSchemaError(
            f"Odoo has no SMS message model: neither {wanted} is installed (install "
            f"sms_base_sr or sms_core_unified for sms.message, or Odoo's sms module for "
            f"sms.sms); installed SMS-related modules: {', '.join(sorted(modules)) or 'none'}")
    info: Mapping[str, Mapping[str, Any]] = adapter.execute(
        chosen, "fields_get", attributes=["type", "relation", "selection", "required", "string"])
    fields, types, selections, problems = _map_fields(chosen, info)
    if "our_id" not in fields:
        candidates = (id_field,) if id_field else ID_CONVENTION
        for name in candidates:
            if name in info and info[name].get("type") in ("char", "text"):
                fields["our_id"] = name
                types["our_id"] = str(info[name]["type"])
                break
        else:
            if id_field:
                raise OdooSchemaError(f"odoo_id_field {id_field!r} is not a text field of "
                                      f"{chosen}")
    missing = [c for c in _REQUIRED if c not in fields]
    if missing:
        names = ", ".join(f"{c} (one of {', '.join(CONCEPTS[c])})" for c in missing)
        raise OdooSchemaError(f"{chosen} lacks what smskit needs: {names}" +
                              (f"; {'; '.join(problems)}" if problems else ""))
    states, degraded = _map_states(chosen, selections.get("state", ()))
    variant = ("sms_core_unified" if "sms_core_unified" in modules
               else "sms_base_sr" if "sms_base_sr" in modules
               else "stock" if chosen == "sms.sms" else f"custom {chosen}")
    if "direction" in fields:
        offered = selections.get("direction", ())
        if not any(v in offered for v in OUTBOUND_VALUES) or not any(
                v in offered for v in INBOUND_VALUES):
            problems.append(f"{chosen}.direction offers {', '.join(offered)}")
            del fields["direction"]
    for concept, what in (("provider_id", "no provider message id field: status callbacks "
                           "are matched by our reference only, in the sidecar"),
                          ("delivered_at", "no delivery date field"),
                          ("direction", "no direction field: replies are not mirrored as "
                           "messages (they reach the ChatRoom)")):
        if concept not in fields:
            degraded.append(what)
    storage = "sidecar"
    if "our_id" in fields:
        dedicated = fields["our_id"] in CONCEPTS["our_id"]
        storage = f"{'field' if dedicated else 'convention'}:{fields['our_id']}"
    note = adapter.execute("ir.model.data", "search_read",
                           [("module", "=", "mail"), ("name", "=", "mt_note")],
                           fields=["res_id"])
    return OdooSchema(variant=variant, model=chosen, modules=modules, models=models,
                      fields=fields, field_types=types, states=states,
                      selections={k: tuple(v) for k, v in selections.items()},
                      id_storage=storage, note_subtype_id=int(note[0]["res_id"]) if note else None,
                      degraded=tuple(degraded))


def _map_fields(model: str, info: Mapping[str, Mapping[str, Any]]
                ) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, Sequence[str]], List[str]]:
    fields: Dict[str, str] = {}
    types: Dict[str, str] = {}
    selections: Dict[str, Sequence[str]] = {}
    problems: List[str] = []
    for concept, candidates in CONCEPTS.items():
        for name in candidates:
            spec = info.get(name)
            if spec is None:
                continue
            kind = str(spec.get("type"))
            if kind not in _TYPES[concept]:
                problems.append(f"{model}.{name} is a {kind} field, expected "
                                f"{' or '.join(_TYPES[concept])}")
                continue
            if concept == "partner" and spec.get("relation") != "res.partner":
                continue
            if concept == "parent" and spec.get("relation") != model:
                continue
            fields[concept] = name
            types[concept] = kind
            if kind == "selection":
                selections[concept] = [str(s[0]) for s in spec.get("selection") or []]
            break
    return fields, types, selections, problems


def _map_states(model: str, values: Sequence[str]) -> Tuple[Dict[State, str], List[str]]:
    missing = [s for s in _REQUIRED_STATES if s not in values]
    if missing:
        raise OdooSchemaError(f"{model}.state lacks the states {', '.join(missing)} "
                              f"(it offers: {', '.join(values) or 'none'})")
    states: Dict[State, str] = {}
    degraded: List[str] = []
    for state, candidates in _FALLBACK.items():
        chosen = next(c for c in candidates if c in values)
        states[state] = chosen
        if chosen != state.value and state is not State.DRAFT:
            degraded.append(f"no {state.value} state: shown as {chosen}")
    return states, degraded
