"""Campaign segments: who a campaign reaches, read in resumable pages.

A segment is JSON data, never code::

    {"type": "csv", "path": "clientes.csv", "phone_column": "telefone"}
    {"type": "tags", "tags": ["vip", "sp"], "match": "all"}          # contacts in the store
    {"type": "odoo", "model": "res.partner", "phone_field": "mobile",
     "domain": [["customer_rank", ">", 0], "|", ["city", "=", "Recife"], ["city", "=", "Olinda"]],
     "fields": ["name"]}

:func:`parse_segment` validates one (an Odoo domain is checked as data: a list of
``[field, operator, value]`` triples and the prefix operators ``"&"``, ``"|"``, ``"!"``; field
names must be identifiers and operators come from a fixed list, so a domain given as the string
``"[('id', '>', 0)]"`` is refused and nothing is ever evaluated). :func:`read_page` returns the
recipients after a cursor and the cursor after them, so a campaign resumes where it stopped:

* csv: the cursor is ``"<rows read>:<byte offset>"``, the file is read from that offset;
* tags: the last phone (contacts are paged by phone);
* odoo: the last record id (``search_read`` ordered by id with ``("id", ">", cursor)``).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import attrs
from typing_extensions import Protocol, runtime_checkable

from smskit.errors import ConfigurationError, ValidationError
from smskit.store.base import Store

__all__ = [
    "CsvSegment",
    "check_phone_column",
    "describe",
    "segment_data",
    "DOMAIN_OPERATORS",
    "OdooExecutor",
    "OdooSegment",
    "Page",
    "Segment",
    "TagSegment",
    "file_digest",
    "parse_segment",
    "read_page",
    "validate_domain",
]

#: Comparison operators an Odoo domain leaf may use.
DOMAIN_OPERATORS = frozenset({
    "=", "!=", "<>", ">", ">=", "<", "<=", "=?", "like", "not like", "ilike", "not ilike",
    "=like", "=ilike", "in", "not in", "child_of", "parent_of",
})
_LOGIC = {"&": 2, "|": 2, "!": 1}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MODEL = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*$")
_SCALARS = (str, int, float, bool, type(None))
_DELIMITERS = (",", ";", "\t", "|")


@runtime_checkable
class OdooExecutor(Protocol):
    """What an Odoo segment is resolved through: ``execute(model, method, *args, **kwargs)``
    (the ``smskit_odoo`` adapters, remote or in-process, have it)."""

    def execute(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of ``model`` and return its result."""
        ...


@attrs.frozen(kw_only=True)
class CsvSegment:
    """Rows of a CSV file (read at run time; ``sha256`` of the file when it was chosen)."""

    path: str
    phone_column: str = "phone"
    encoding: str = "utf-8-sig"
    sha256: Optional[str] = None
    size: Optional[int] = None
    type: str = "csv"


@attrs.frozen(kw_only=True)
class TagSegment:
    """Stored contacts with any (or all) of ``tags``."""

    tags: Tuple[str, ...]
    match: str = "any"
    type: str = "tags"


@attrs.frozen(kw_only=True)
class OdooSegment:
    """Records of an Odoo model matching a domain (data), read through an executor."""

    domain: Tuple[Any, ...]
    model: str = "res.partner"
    phone_field: str = "mobile"
    fields: Tuple[str, ...] = ("name",)
    type: str = "odoo"


Segment = Union[CsvSegment, TagSegment, OdooSegment]


@attrs.frozen(kw_only=True)
class Page:
    """Recipients (mappings with a ``phone_field``) after a cursor, and the cursor after them.

    ``done``: the segment has nothing after ``cursor``; ``skipped``: rows without a phone.
    """

    recipients: List[Dict[str, Any]]
    cursor: Optional[str]
    done: bool
    phone_field: str = "phone"
    skipped: int = 0


# -- validation ----------------------------------------------------------------------------------
def _field(value: object, what: str) -> str:
    if not isinstance(value, str) or not _FIELD.match(value):
        raise ValidationError(f"{what} must be a field name (letters, digits, _ and dots), "
                              f"got {value!r}")
    return value


def _value(value: object, where: str) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return list(value)
    raise ValidationError(f"{where}: a value must be a string, number, boolean, null or a list "
                          f"of those, got {value!r}")


def validate_domain(domain: object) -> List[Any]:
    """An Odoo domain checked as data (see the module docs), as a JSON-able list.

    A string (``"[('id', '>', 0)]"``) is refused: smskit never evaluates a domain.
    """
    if isinstance(domain, (str, bytes)):
        raise ValidationError(
            f"an Odoo domain must be JSON data (a list such as [[\"id\", \">\", 0]]), not a "
            f"string: {domain!r} (smskit never evaluates code)")
    if not isinstance(domain, (list, tuple)):
        raise ValidationError(f"an Odoo domain must be a list, got {type(domain).__name__}")
    out: List[Any] = []
    operands = 0
    for index in range(len(domain) - 1, -1, -1):  # prefix notation: read it backwards
        item = domain[index]
        where = f"domain item #{index}"
        if isinstance(item, str):
            if item not in _LOGIC:
                raise ValidationError(f"{where}: unknown logical operator {item!r} "
                                      "(use '&', '|' or '!')")
            if operands < _LOGIC[item]:
                raise ValidationError(f"{where}: {item!r} needs {_LOGIC[item]} operand(s) "
                                      "after it")
            operands -= _LOGIC[item] - 1
            out.append(item)
            continue
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValidationError(f"{where}: expected [field, operator, value] or '&', '|', "
                                  f"'!', got {item!r}")
        name, operator, value = item
        _field(name, f"{where}: the field")
        if not isinstance(operator, str) or operator.lower() not in DOMAIN_OPERATORS:
            raise ValidationError(f"{where}: operator {operator!r} is not allowed (one of "
                                  f"{', '.join(sorted(DOMAIN_OPERATORS))})")
        checked = _value(value, where)
        if operator.lower() in ("in", "not in") and not isinstance(checked, list):
            raise ValidationError(f"{where}: {operator!r} needs a list value, got {value!r}")
        out.append([name, operator.lower(), checked])
        operands += 1
    return list(reversed(out))


def _text_list(value: object, what: str) -> Tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(f"{what} must be a list of strings, got {value!r}")
    items = tuple(str(v).strip() for v in value if str(v).strip())
    if not items:
        raise ValidationError(f"{what} is empty")
    return items


def file_digest(path: Path) -> Tuple[str, int]:
    """The SHA-256 and size of a file (read in blocks)."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise ValidationError(f"cannot read the segment file {str(path)!r}: {exc}") from exc
    return digest.hexdigest(), size


def parse_segment(data: Mapping[str, Any]) -> Segment:
    """Validate segment data (JSON) into a segment; :class:`ValidationError` names the fault."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"a segment must be a mapping with a 'type', got {data!r}")
    kind = data.get("type")
    if kind == "csv":
        path = data.get("path")
        if not isinstance(path, str) or not path:
            raise ValidationError("a csv segment needs a 'path'")
        column = data.get("phone_column") or "phone"
        return CsvSegment(path=path, phone_column=str(column),
                          encoding=str(data.get("encoding") or "utf-8-sig"),
                          sha256=data.get("sha256"), size=data.get("size"))
    if kind == "tags":
        match = data.get("match") or "any"
        if match not in ("any", "all"):
            raise ValidationError(f"a tags segment's match must be 'any' or 'all', got {match!r}")
        return TagSegment(tags=_text_list(data.get("tags"), "the segment's tags"), match=match)
    if kind == "odoo":
        model = data.get("model") or "res.partner"
        if not isinstance(model, str) or not _MODEL.match(model):
            raise ValidationError(f"an Odoo model name looks like 'res.partner', got {model!r}")
        fields = data.get("fields", ["name"])
        return OdooSegment(
            model=model, domain=tuple(validate_domain(data.get("domain", []))),
            phone_field=_field(data.get("phone_field") or "mobile", "phone_field"),
            fields=tuple(_field(f, "a field") for f in _text_list(fields, "fields"))
            if fields else ())
    raise ValidationError(f"unknown segment type {kind!r} (csv, tags or odoo)")


def segment_data(segment: Segment) -> Dict[str, Any]:
    """The JSON form of a segment (what a campaign stores)."""
    data = attrs.asdict(segment)
    for key in ("tags", "domain", "fields"):
        if key in data:
            data[key] = list(data[key])
    return data


def describe(segment: Segment) -> str:
    """One line for people: ``csv a.csv``, ``tags vip+sp``, ``odoo res.partner (2 terms)``."""
    if isinstance(segment, CsvSegment):
        return f"csv {segment.path}"
    if isinstance(segment, TagSegment):
        return f"tags {('+' if segment.match == 'all' else ',').join(segment.tags)}"
    leaves = sum(1 for item in segment.domain if not isinstance(item, str))
    return f"odoo {segment.model} ({leaves} term{'s' if leaves != 1 else ''})"


# -- reading pages -------------------------------------------------------------------------------
def _csv_rows(segment: CsvSegment, offset: int) -> Iterator[Tuple[Dict[str, Any], int]]:
    """``(row, byte offset after it)`` from ``offset`` (0: the first data row)."""
    try:
        with open(Path(segment.path), "rb") as fh:
            yield from _csv_read(segment, fh, offset)
    except OSError as exc:
        raise ValidationError(f"cannot read the segment file {segment.path!r}: {exc}") from exc


def _csv_read(segment: CsvSegment, fh: BinaryIO,
              offset: int) -> Iterator[Tuple[Dict[str, Any], int]]:
    if segment.size is not None and os.fstat(fh.fileno()).st_size != segment.size:
        raise ValidationError(f"the segment file {segment.path} changed since the campaign "
                              "was created; create a new campaign for the new file")
    header = fh.readline()
    position = max(offset, len(header))
    try:
        text = header.decode(segment.encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ValidationError(f"{segment.path}: header is not {segment.encoding}") from exc
    delimiter = max(_DELIMITERS, key=text.count)
    if delimiter not in text:
        delimiter = ","
    names = [n.strip() for n in next(csv.reader([text], delimiter=delimiter), [])]
    if segment.phone_column not in names:
        raise ValidationError(f"{segment.path} has no column {segment.phone_column!r} "
                              f"(columns: {', '.join(names) or 'none'})")
    fh.seek(position)

    def lines() -> Iterator[str]:
        nonlocal position
        for raw in fh:
            position += len(raw)
            try:
                yield raw.decode(segment.encoding)
            except UnicodeDecodeError as exc:
                raise ValidationError(f"{segment.path}: a line before byte {position} is not "
                                      f"{segment.encoding}") from exc

    for row in csv.DictReader(lines(), fieldnames=names, delimiter=delimiter):
        yield {k: v for k, v in row.items() if k is not None and v is not None}, position


def _csv_page(segment: CsvSegment, cursor: Optional[str], limit: int) -> Page:
    rows_read, offset = 0, 0
    if cursor:
        left, _, right = cursor.partition(":")
        rows_read, offset = int(left), int(right)
    recipients: List[Dict[str, Any]] = []
    for row, position in _csv_rows(segment, offset):
        recipients.append(row)
        rows_read, offset = rows_read + 1, position
        if len(recipients) >= limit:
            break
    done = len(recipients) < limit
    return Page(recipients=recipients, cursor=f"{rows_read}:{offset}", done=done,
                phone_field=segment.phone_column)


def _tags_page(segment: TagSegment, store: Store, cursor: Optional[str], limit: int) -> Page:
    from smskit.outreach.contacts import outreach_store

    contacts = outreach_store(store, "a tags segment").contacts_by_tags(
        segment.tags, match=segment.match, after=cursor, limit=limit)
    recipients = [{**c.variables, "name": c.name or "", "phone": c.phone} for c in contacts]
    return Page(recipients=recipients, cursor=contacts[-1].phone if contacts else cursor,
                done=len(contacts) < limit)


def _odoo_page(segment: OdooSegment, odoo: Optional[OdooExecutor], cursor: Optional[str],
               limit: int) -> Page:
    if odoo is None:
        raise ConfigurationError("an Odoo segment needs an Odoo connection: give the campaign "
                                 "runner (and the worker) odoo=<an object with execute()>")
    after = int(cursor or 0)
    domain = [*segment.domain, ["id", ">", after]]
    fields = list(dict.fromkeys([segment.phone_field, *segment.fields, "id"]))
    rows = odoo.execute(segment.model, "search_read", domain, fields=fields, order="id asc",
                        limit=limit)
    if not isinstance(rows, list):
        raise ValidationError(f"Odoo search_read on {segment.model} answered "
                              f"{type(rows).__name__}, not a list")
    recipients: List[Dict[str, Any]] = []
    skipped = 0
    last = after
    for row in rows:
        last = max(last, int(row["id"]))
        phone = row.get(segment.phone_field)
        if not phone:  # Odoo says False for an empty field
            skipped += 1
            continue
        values = {f: row.get(f) for f in segment.fields if row.get(f) not in (None, False)}
        recipients.append({**values, "phone": phone})
    return Page(recipients=recipients, cursor=str(last) if rows else cursor,
                done=len(rows) < limit, skipped=skipped)


def read_page(segment: Segment, store: Store, cursor: Optional[str], limit: int, *,
              odoo: Optional[OdooExecutor] = None) -> Page:
    """Up to ``limit`` recipients of ``segment`` after ``cursor`` (``None``: the start)."""
    if limit < 1:
        raise ValidationError(f"page size must be at least 1, got {limit!r}")
    if isinstance(segment, CsvSegment):
        return _csv_page(segment, cursor, limit)
    if isinstance(segment, TagSegment):
        return _tags_page(segment, store, cursor, limit)
    return _odoo_page(segment, odoo, cursor, limit)


def check_phone_column(segment: CsvSegment) -> None:
    """Open the file and check its header (before a campaign is stored)."""
    for _ in _csv_rows(segment, 0):
        break

