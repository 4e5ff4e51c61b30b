"""Campaign audiences: who a campaign reaches, read in resumable pages.

An audience is JSON data, never code, stored with the campaign. Its ``"type"`` names the
*audience source* that validates and reads it; plugins register sources through the
``register_audience_sources`` hook, and the built-in ones (:mod:`smskit._builtin`) register the
same way::

    {"type": "csv", "path": "clientes.csv", "phone_column": "telefone"}
    {"type": "tags", "tags": ["vip", "sp"], "match": "all"}          # contacts in the store

(the ``smskit_odoo`` plugin adds ``{"type": "odoo", ...}``, the records of an Odoo domain).

A source (:class:`AudienceSource`) parses the stored data into an :class:`Audience` value,
may check it when the campaign is created and started, and reads a :class:`Page`: the
recipients after a cursor and the cursor after them, so a campaign resumes where it stopped:

* csv: the cursor is ``"<rows read>:<byte offset>"``, the file is read from that offset;
* tags: the last phone (contacts are paged by phone).
"""

from __future__ import annotations

import abc
import csv
import hashlib
import os
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    AbstractSet,
    Any,
    BinaryIO,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
)

import attrs

from smskit.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from smskit.kit import SmsKit

__all__ = [
    "Audience",
    "AudienceSource",
    "CsvAudience",
    "CsvSource",
    "Page",
    "TagAudience",
    "TagSource",
    "audience_sources",
    "check_encoding",
    "check_phone_column",
    "csv_cells",
    "csv_header",
    "file_digest",
    "parse_audience",
    "source_for",
    "text_list",
]

_DELIMITERS = (",", ";", "\t", "|")


class Audience(abc.ABC):
    """Who a campaign reaches, validated; made by an :class:`AudienceSource`."""

    __slots__ = ()

    @abc.abstractmethod
    def to_data(self) -> Dict[str, Any]:
        """The JSON data stored with the campaign; its ``"type"`` names the source."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for people: ``csv a.csv``, ``tags vip+sp``."""


A = TypeVar("A", bound=Audience)


@attrs.frozen(kw_only=True)
class Page:
    """Recipients (mappings with a ``phone_field``) after a cursor, and the cursor after them.

    ``done``: the audience has nothing after ``cursor``; ``skipped``: rows without a phone.
    """

    recipients: List[Dict[str, Any]]
    cursor: Optional[str]
    done: bool
    phone_field: str = "phone"
    skipped: int = 0


class AudienceSource(abc.ABC, Generic[A]):
    """One type of audience: registered by a plugin with ``register(type, source)`` in its
    ``register_audience_sources`` hook.

    :meth:`parse` and :meth:`read_page` are required; the other methods have defaults.
    """

    @abc.abstractmethod
    def parse(self, data: Mapping[str, Any]) -> A:
        """Validate stored JSON data (with its ``"type"``) into an audience; a
        :class:`~smskit.errors.ValidationError` names the fault. Never evaluates code."""

    def prepare(self, audience: A) -> A:
        """When a campaign is created: check what can be checked now and return the audience
        to store (the CSV source records the file's digest). Default: ``audience`` as is."""
        return audience

    def check(self, audience: A) -> None:
        """When a campaign starts: raise :class:`~smskit.errors.ValidationError` if the
        audience can no longer be read as it was created. Default: nothing to check."""

    def variables(self, kit: SmsKit, audience: A) -> Optional[AbstractSet[str]]:
        """The names every recipient mapping carries (a CSV file's header), so a campaign
        whose template needs another is refused when it is created; ``None`` when the source
        cannot tell without reading recipients (the default: the campaign then looks at the
        first page)."""
        return None

    @abc.abstractmethod
    def read_page(self, kit: SmsKit, audience: A, cursor: Optional[str], limit: int) -> Page:
        """Up to ``limit`` recipients after ``cursor`` (``None``: the start), in a stable
        order. A :class:`~smskit.errors.ValidationError` or
        :class:`~smskit.errors.ConfigurationError` pauses the campaign with the reason; any
        other error is retried on the next worker cycle."""

    def cli_options(self) -> List[Any]:
        """``click`` options this source adds to ``smskit campaign create`` (import click
        inside). Default: none; the generic ``--audience JSON`` still reaches the source."""
        return []

    def from_cli(self, options: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """Audience data from the values of :meth:`cli_options` (by parameter name), or
        ``None`` when the user gave none of this source's options. Default: ``None``."""
        return None


# -- the registry ----------------------------------------------------------------------------
def audience_sources(hooks: Any) -> Dict[str, AudienceSource[Any]]:
    """The sources every plugin registers through ``hooks.register_audience_sources``
    (a type registered twice is a :class:`~smskit.errors.ConfigurationError`)."""
    found: Dict[str, AudienceSource[Any]] = {}

    def register(kind: str, source: AudienceSource[Any]) -> None:
        if kind in found:
            raise ConfigurationError(f"audience type {kind!r} is registered by two plugins")
        if not isinstance(source, AudienceSource):
            raise ConfigurationError(f"audience type {kind!r}: {source!r} is not an "
                                     "AudienceSource")
        found[kind] = source

    hooks.register_audience_sources(register=register)
    return found


def source_for(data: Mapping[str, Any],
               sources: Mapping[str, AudienceSource[Any]]) -> AudienceSource[Any]:
    """The source of audience ``data`` (by its ``"type"``)."""
    if not isinstance(data, Mapping):
        raise ValidationError(f"an audience must be a mapping with a 'type', got {data!r}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise ValidationError(f"unknown audience type {kind!r} (known: {known}; a plugin "
                              "registers the others)")
    return sources[kind]


def parse_audience(data: Mapping[str, Any],
                   sources: Mapping[str, AudienceSource[Any]]) -> Audience:
    """Validate audience data (JSON) with its source."""
    parsed: Audience = source_for(data, sources).parse(data)
    return parsed


# -- shared validation -----------------------------------------------------------------------
def text_list(value: object, what: str) -> Tuple[str, ...]:
    """A non-empty list of non-blank strings (stripped), for a source's own fields."""
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
        raise ValidationError(f"cannot read the audience file {str(path)!r}: {exc}") from exc
    return digest.hexdigest(), size


# -- CSV file ----------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class CsvAudience(Audience):
    """Rows of a CSV file (read at run time; ``sha256`` of the file when it was chosen)."""

    path: str
    phone_column: str = "phone"
    encoding: str = "utf-8-sig"
    sha256: Optional[str] = None
    size: Optional[int] = None

    def to_data(self) -> Dict[str, Any]:
        """``{"type": "csv", "path", "phone_column", "encoding", "sha256", "size"}``."""
        return {"type": "csv", **attrs.asdict(self)}

    def describe(self) -> str:
        """``csv <path>``."""
        return f"csv {self.path}"


class CsvSource(AudienceSource[CsvAudience]):
    """The rows of a CSV file; the other columns are template variables (``--csv FILE``)."""

    def parse(self, data: Mapping[str, Any]) -> CsvAudience:
        """``path`` (required), ``phone_column``, ``encoding``, ``sha256``, ``size``."""
        path = data.get("path")
        if not isinstance(path, str) or not path:
            raise ValidationError("a csv audience needs a 'path'")
        column = data.get("phone_column") or "phone"
        return CsvAudience(path=path, phone_column=str(column),
                           encoding=str(data.get("encoding") or "utf-8-sig"),
                           sha256=data.get("sha256"), size=data.get("size"))

    def prepare(self, audience: CsvAudience) -> CsvAudience:
        """The file must have its phone column and be all in its encoding (else the campaign
        would stop at the first other line, part of it sent); its SHA-256 and size are
        recorded."""
        check_phone_column(audience)
        check_encoding(audience)
        digest, size = file_digest(Path(audience.path))
        return attrs.evolve(audience, sha256=digest, size=size)

    def variables(self, kit: SmsKit, audience: CsvAudience) -> Optional[AbstractSet[str]]:
        """The header's column names."""
        return frozenset(csv_header(audience))

    def check(self, audience: CsvAudience) -> None:
        """A file changed since the campaign was created is refused."""
        if audience.sha256:
            digest, _ = file_digest(Path(audience.path))
            if digest != audience.sha256:
                raise ValidationError(f"the audience file {audience.path} changed since the "
                                      "campaign was created; create a new campaign")

    def read_page(self, kit: SmsKit, audience: CsvAudience, cursor: Optional[str],
                  limit: int) -> Page:
        """Rows after ``"<rows read>:<byte offset>"``, read from that offset."""
        rows_read, offset = 0, 0
        if cursor:
            left, _, right = cursor.partition(":")
            rows_read, offset = int(left), int(right)
        recipients: List[Dict[str, Any]] = []
        for row, position in _csv_rows(audience, offset):
            recipients.append(row)
            rows_read, offset = rows_read + 1, position
            if len(recipients) >= limit:
                break
        done = len(recipients) < limit
        return Page(recipients=recipients, cursor=f"{rows_read}:{offset}", done=done,
                    phone_field=audience.phone_column)

    def cli_options(self) -> List[Any]:
        """``--csv FILE`` and ``--phone-column``."""
        import click

        return [
            click.Option(["--csv", "csv_file"], metavar="FILE",
                         type=click.Path(exists=True, dir_okay=False, path_type=Path),
                         help="Audience: the rows of a CSV file."),
            click.Option(["--phone-column"], default="phone", show_default=True,
                         help="With --csv: the phone column."),
            click.Option(["--encoding", "csv_encoding"], default="utf-8-sig",
                         show_default=True,
                         help="With --csv: the file's encoding (cp1252 for a CSV saved by "
                              "Excel in Portuguese)."),
        ]

    def from_cli(self, options: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """``--csv FILE`` (made absolute: the worker may run elsewhere), ``--phone-column``
        and ``--encoding``."""
        path = options.get("csv_file")
        if path is None:
            return None
        return {"type": "csv", "path": str(Path(path).resolve()),
                "phone_column": options.get("phone_column") or "phone",
                "encoding": options.get("csv_encoding") or "utf-8-sig"}


def _csv_rows(audience: CsvAudience, offset: int) -> Iterator[Tuple[Dict[str, Any], int]]:
    """``(row, byte offset after it)`` from ``offset`` (0: the first data row)."""
    try:
        with open(Path(audience.path), "rb") as fh:
            yield from _csv_read(audience, fh, offset)
    except OSError as exc:
        raise ValidationError(f"cannot read the audience file {audience.path!r}: "
                              f"{exc}") from exc


def _csv_read(audience: CsvAudience, fh: BinaryIO,
              offset: int) -> Iterator[Tuple[Dict[str, Any], int]]:
    if audience.size is not None and os.fstat(fh.fileno()).st_size != audience.size:
        raise ValidationError(f"the audience file {audience.path} changed since the campaign "
                              "was created; create a new campaign for the new file")
    header = fh.readline()
    position = max(offset, len(header))
    names, delimiter = _header(audience, header)
    fh.seek(position)

    def lines() -> Iterator[str]:
        nonlocal position
        for raw in fh:
            position += len(raw)
            try:
                yield raw.decode(audience.encoding)
            except UnicodeDecodeError as exc:
                raise ValidationError(f"{audience.path}: a line before byte {position} is not "
                                      f"{audience.encoding}") from exc

    for row in csv.DictReader(lines(), fieldnames=names, delimiter=delimiter):
        cells = csv_cells(row)
        if cells is not None:
            yield cells, position


def _header(audience: CsvAudience, header: bytes) -> Tuple[List[str], str]:
    """The column names and the delimiter of a header line, which must name the phone
    column."""
    try:
        text = header.decode(audience.encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ValidationError(f"{audience.path}: header is not {audience.encoding}") from exc
    delimiter = max(_DELIMITERS, key=text.count)
    if delimiter not in text:
        delimiter = ","
    names = [n.strip() for n in next(csv.reader([text], delimiter=delimiter), [])]
    if audience.phone_column not in names:
        raise ValidationError(f"{audience.path} has no column {audience.phone_column!r} "
                              f"(columns: {', '.join(names) or 'none'})")
    return names, delimiter


def csv_header(audience: CsvAudience) -> List[str]:
    """The column names of the audience's file (which must have its phone column)."""
    try:
        with open(Path(audience.path), "rb") as fh:
            return _header(audience, fh.readline())[0]
    except OSError as exc:
        raise ValidationError(f"cannot read the audience file {audience.path!r}: "
                              f"{exc}") from exc


def check_phone_column(audience: CsvAudience) -> None:
    """Open the file and check its header (before a campaign is stored)."""
    csv_header(audience)


def undecodable_line(lines: Iterable[bytes], encoding: str) -> Optional[Tuple[int, str]]:
    """The number (from 1) and the reason of the first of ``lines`` that does not decode in
    ``encoding``, or ``None`` when they all do (read through once: a file of any size). An
    unknown ``encoding`` raises ``LookupError``."""
    for number, raw in enumerate(lines, start=1):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as exc:
            return number, exc.reason
    return None


def csv_cells(row: Mapping[Optional[str], Optional[str]]) -> Optional[Dict[str, str]]:
    """A ``csv.DictReader`` row as ``{column: value}`` (a short row's missing cells absent),
    or ``None`` for a row of empty cells (``;;;``: what Excel writes for a row it once
    formatted), which is no recipient, like an empty line."""
    cells = {k: v for k, v in row.items() if k is not None and v is not None}
    return cells if any(v.strip() for v in cells.values()) else None


def check_encoding(audience: CsvAudience) -> None:
    """Every line of the audience's file decodes in its encoding (read once, streamed): a
    :class:`ValidationError` naming the first line that does not, and what to try."""
    try:
        with open(Path(audience.path), "rb") as fh:
            bad = undecodable_line(fh, audience.encoding)
        if bad is not None:
            raise ValidationError(
                f"{audience.path}: line {bad[0]} is not valid {audience.encoding} ({bad[1]}); "
                "give the file's encoding (--encoding cp1252 for a CSV saved by Excel in "
                "Portuguese, or \"encoding\" in --audience JSON)")
    except LookupError as exc:
        raise ValidationError(f"unknown encoding {audience.encoding!r}") from exc
    except OSError as exc:
        raise ValidationError(f"cannot read the audience file {audience.path!r}: "
                              f"{exc}") from exc


# -- contact tags --------------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class TagAudience(Audience):
    """Stored contacts with any (or all) of ``tags``."""

    tags: Tuple[str, ...]
    match: str = "any"

    def to_data(self) -> Dict[str, Any]:
        """``{"type": "tags", "tags": [...], "match": "any" | "all"}``."""
        return {"type": "tags", "tags": list(self.tags), "match": self.match}

    def describe(self) -> str:
        """``tags vip,sp`` (any) or ``tags vip+sp`` (all)."""
        return f"tags {('+' if self.match == 'all' else ',').join(self.tags)}"


class TagSource(AudienceSource[TagAudience]):
    """Contacts in the store with any or all of some tags (``--tags a,b``)."""

    def parse(self, data: Mapping[str, Any]) -> TagAudience:
        """``tags`` (a non-empty list) and ``match`` (``any`` or ``all``)."""
        match = data.get("match") or "any"
        if match not in ("any", "all"):
            raise ValidationError(f"a tags audience's match must be 'any' or 'all', got "
                                  f"{match!r}")
        return TagAudience(tags=text_list(data.get("tags"), "the audience's tags"), match=match)

    def read_page(self, kit: SmsKit, audience: TagAudience, cursor: Optional[str],
                  limit: int) -> Page:
        """Contacts after the last phone read, with their name and variables."""
        from smskit.outreach.contacts import outreach_store

        contacts = outreach_store(kit.store, "a tags audience").contacts_by_tags(
            audience.tags, match=audience.match, after=cursor, limit=limit)
        recipients = [{**c.variables, "name": c.name or "", "phone": c.phone}
                      for c in contacts]
        return Page(recipients=recipients, cursor=contacts[-1].phone if contacts else cursor,
                    done=len(contacts) < limit)

    def cli_options(self) -> List[Any]:
        """``--tags a,b`` and ``--match any|all``."""
        import click

        return [
            click.Option(["--tags"], metavar="A,B",
                         help="Audience: contacts with these tags (comma-separated)."),
            click.Option(["--match"], type=click.Choice(["any", "all"]), default="any",
                         show_default=True, help="With --tags: any or all of them."),
        ]

    def from_cli(self, options: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """``--tags a,b`` and ``--match``."""
        tags = options.get("tags")
        if tags is None:
            return None
        return {"type": "tags", "tags": [t for t in str(tags).split(",") if t.strip()],
                "match": options.get("match") or "any"}
