"""Contacts: the people a tags audience reaches, and per-recipient do-not-disturb.

A :class:`~smskit.store.outreach.Contact` is keyed by its E.164 phone and carries a name,
tags (for campaign audiences), template variables and an optional do-not-disturb rule:

* ``dnd_window``: a daily window ``"HH:MM-HH:MM"`` (may cross midnight) in the installation's
  time zone during which this person is not messaged;
* ``dnd_days``: whole days (``mon``..``sun`` or ``seg``..``dom``);
* ``dnd_until``: a moment before which nothing is sent ("not before Monday 9:00").

A message to such a person is deferred to the next moment allowed by both the installation's
quiet hours and the person's rule, like quiet hours: never dropped. The rule itself is
:func:`smskit.policy.dnd_next_allowed`; a send looks the rules up once per chunk of recipients
(:mod:`smskit.outbox`), not once per recipient.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs

from smskit.errors import ConfigurationError, ValidationError
from smskit.models import utcnow
from smskit.phone import Phone
from smskit.policy import check_dnd, dnd_next_allowed
from smskit.store.base import Store
from smskit.store.outreach import Contact, OutreachStore
from smskit.timeutil import ensure_aware

__all__ = [
    "ContactImport",
    "check_dnd",
    "dnd_next_allowed",
    "import_contacts",
    "make_contact",
    "outreach_store",
]

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"[,;|]")
_DND_COLUMNS = ("dnd_window", "dnd_days", "dnd_until")
_CHUNK = 1000


def outreach_store(store: Store, what: str) -> OutreachStore:
    """``store`` as an :class:`OutreachStore`, or a clear error naming ``what`` needs it."""
    if not isinstance(store, OutreachStore):
        raise ConfigurationError(f"{what} needs a store with contacts and campaigns (the "
                                 f"built-in memory, SQLite and PostgreSQL stores); "
                                 f"{type(store).__name__} has none")
    return store


def make_contact(
    phone: object,
    *,
    region: str = "BR",
    name: Optional[str] = None,
    tags: Iterable[str] = (),
    variables: Optional[Mapping[str, Any]] = None,
    dnd_window: Optional[str] = None,
    dnd_days: Sequence[str] = (),
    dnd_until: Optional[dt.datetime] = None,
    tz: str = "America/Sao_Paulo",
    now: Optional[dt.datetime] = None,
) -> Contact:
    """A validated contact: the phone in E.164 (landlines allowed), tags stripped, the DND rule
    checked (a naive ``dnd_until`` is local time in ``tz``)."""
    e164 = Phone.parse(phone, region, allow_landlines=True).e164
    check_dnd(dnd_window, dnd_days, tz)
    clean = [t.strip() for t in tags if t and t.strip()]
    fields: Dict[str, Any] = {}
    if now is not None:
        fields = {"created_at": now, "updated_at": now}
    return Contact(phone=e164, name=name or None, tags=clean, variables=dict(variables or {}),
                   dnd_window=dnd_window or None, dnd_days=tuple(dnd_days),
                   dnd_until=ensure_aware(dnd_until, tz) if dnd_until else None, **fields)


@attrs.define
class ContactImport:
    """What :func:`import_contacts` did."""

    created: int = 0
    updated: int = 0
    invalid: int = 0
    invalid_rows: List[Dict[str, Any]] = attrs.field(factory=list)


def _row_dnd(row: Mapping[str, Any], old: Optional[Contact]
             ) -> Tuple[Optional[str], Sequence[str], Optional[dt.datetime]]:
    if not any(row.get(k) for k in _DND_COLUMNS):
        return (old.dnd_window, old.dnd_days, old.dnd_until) if old else (None, (), None)
    until: Optional[dt.datetime] = None
    if row.get("dnd_until"):
        try:
            until = dt.datetime.fromisoformat(str(row["dnd_until"]).strip())
        except ValueError as exc:
            raise ValidationError(f"dnd_until: not an ISO 8601 date/time: "
                                  f"{row['dnd_until']!r}") from exc
    days = [d.strip() for d in _SPLIT.split(str(row.get("dnd_days") or "")) if d.strip()]
    return row.get("dnd_window") or None, days, until


def _row_contact(row: Mapping[str, Any], old: Optional[Contact], *, phone: str,
                 name_column: str, tags_column: str, extra_tags: Sequence[str],
                 replace_tags: bool, region: str, tz: str, now: dt.datetime) -> Contact:
    tags = [t for t in _SPLIT.split(str(row.get(tags_column) or "")) if t.strip()]
    if old is not None and not replace_tags:
        tags = [*old.tags, *tags]
    skip = {phone, name_column, tags_column, *_DND_COLUMNS}
    variables = {k: v for k, v in row.items() if k not in skip and v not in (None, "")}
    if old is not None:
        variables = {**old.variables, **variables}
    window, days, until = _row_dnd(row, old)
    return make_contact(
        row.get(phone), region=region, name=row.get(name_column) or (old.name if old else None),
        tags=[*tags, *extra_tags], variables=variables, dnd_window=window, dnd_days=days,
        dnd_until=until, tz=tz, now=now)


def import_contacts(store: Store, rows: Iterable[Mapping[str, Any]], *,
                    phone_column: str = "phone", name_column: str = "name",
                    tags_column: str = "tags", tags: Sequence[str] = (),
                    replace_tags: bool = False, region: str = "BR",
                    tz: str = "America/Sao_Paulo", now: Optional[dt.datetime] = None,
                    show_invalid: int = 20) -> ContactImport:
    """Insert or update contacts from rows (a CSV: ``phone,name,tags,...``), 1000 at a time.

    ``tags`` cells hold tags separated by ``,`` ``;`` or ``|``; they are added to a stored
    contact's tags (``replace_tags`` replaces them). Other columns become template variables;
    ``dnd_window``/``dnd_days``/``dnd_until`` columns set do-not-disturb (a stored rule is
    kept when the row has none). ``tags`` adds tags to every row. A bad row is counted and
    listed (at most ``show_invalid``), never aborting the import.
    """
    target = outreach_store(store, "importing contacts")
    moment = now or utcnow()
    report = ContactImport()
    pending: List[Tuple[int, Mapping[str, Any]]] = []

    def flush() -> None:
        phones: Dict[int, str] = {}
        for number, row in pending:
            try:
                phones[number] = Phone.parse(row.get(phone_column), region,
                                             allow_landlines=True).e164
            except ValidationError as exc:
                _invalid(report, number, row.get(phone_column), exc, show_invalid)
        known = target.get_contacts(list(phones.values()))
        batch: Dict[str, Contact] = {}
        for number, row in pending:
            if number not in phones:
                continue
            e164 = phones[number]
            try:
                contact = _row_contact(row, batch.get(e164) or known.get(e164),
                                       phone=phone_column, name_column=name_column,
                                       tags_column=tags_column, extra_tags=tags,
                                       replace_tags=replace_tags, region=region, tz=tz,
                                       now=moment)
            except ValidationError as exc:
                _invalid(report, number, row.get(phone_column), exc, show_invalid)
                continue
            batch[e164] = contact
        created, updated = target.save_contacts(batch.values())
        report.created += created
        report.updated += updated
        pending.clear()

    for number, row in enumerate(rows, 1):
        pending.append((number, row))
        if len(pending) >= _CHUNK:
            flush()
    if pending:
        flush()
    return report


def _invalid(report: ContactImport, number: int, raw: object, exc: Exception,
             show: int) -> None:
    report.invalid += 1
    if len(report.invalid_rows) < show:
        report.invalid_rows.append({"row": number, "phone": raw, "reason": str(exc)})
