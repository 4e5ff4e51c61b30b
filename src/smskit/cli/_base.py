"""What every ``smskit`` command shares: the per-run state, output helpers and input parsers.

Heavy modules (the kit, the stores, rich) are imported inside functions so that building the
command group (``smskit --help``) stays fast.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
)

import attrs
import click

from smskit.errors import ConfigurationError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from rich.console import Console

    from smskit.config import Settings
    from smskit.kit import SmsKit

__all__ = [
    "AppState",
    "CsvSource",
    "brl",
    "cells",
    "database_url",
    "missing_sqlite_file",
    "require_server_extra",
    "emit_json",
    "err_console",
    "local_time",
    "out_console",
    "parse_vars",
    "parse_when",
    "pass_state",
    "to_jsonable",
]


@attrs.define
class AppState:
    """Per-invocation state (``ctx.obj``): global options, and the settings and kit built lazily."""

    config_file: Optional[str] = None
    debug: bool = False
    database: Optional[str] = None
    provider: Optional[str] = None
    _settings: Optional[Settings] = None
    _kit: Optional[SmsKit] = None

    def settings(self) -> Settings:
        """``Settings.load``: ``--database`` and ``--provider`` over ``SMSKIT_*`` variables over
        ``--config`` / ``smskit.toml``."""
        if self._settings is None:
            from smskit.config import Settings

            self._settings = Settings.load(config_file=self.config_file,
                                           database_url=database_url(self.database),
                                           provider=self.provider)
        return self._settings

    def kit(self, *, looking_for: Optional[str] = None) -> SmsKit:
        """The :class:`~smskit.kit.SmsKit` for these settings (closed when the command ends).

        ``looking_for`` (``"message 'X'"``): the command reads or changes something stored, so
        a SQLite file that does not exist means it is not there; that is the error, and the
        file is not created.
        """
        if looking_for is not None:
            missing = missing_sqlite_file(self.settings().database_url)
            if missing is not None:
                raise NotFoundError(
                    f"no {looking_for}: there is no smskit database at {missing} (choose one "
                    "with --database or SMSKIT_DATABASE_URL)")
        if self._kit is None:
            from smskit.kit import SmsKit

            self._kit = SmsKit(self.settings())
        return self._kit

    def secrets(self) -> List[str]:
        """Every secret-looking setting value, to redact from unexpected error messages."""
        if self._settings is None:
            return []
        words = ("token", "secret", "password", "key")
        found = [v for k, v in self._settings.values.items()
                 if v and any(w in k for w in words)]
        if self._settings.webhook_secret:
            found.append(self._settings.webhook_secret.reveal())
        return found

    def close(self) -> None:
        """Close the kit (its providers and store) if one was built."""
        if self._kit is not None:
            kit, self._kit = self._kit, None
            kit.close()


pass_state = click.make_pass_decorator(AppState, ensure=True)


def database_url(value: Optional[str]) -> Optional[str]:
    """``--database``: a store URL as given, or a path read as a SQLite file
    (``sms.db`` -> ``sqlite:///sms.db``, ``/var/lib/smskit/sms.db`` -> ``sqlite:////var/...``)."""
    if value is None or "://" in value:
        return value
    if not value.strip():
        raise click.BadParameter("a database URL or a SQLite file path", param_hint="--database")
    return f"sqlite:///{value}"


def missing_sqlite_file(url: str) -> Optional[Path]:
    """The file of a ``sqlite:///`` URL when it does not exist (``None`` for any other store,
    an in-memory database or a file that exists)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?", 1)[0]
    if path in ("", ":memory:") or "mode=memory" in rest:
        return None
    return None if Path(path).exists() else Path(path)


# -- consoles and output -----------------------------------------------------------------------
def out_console() -> Console:
    """A rich console on stdout (resolved at print time, so test runners capture it)."""
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    """A rich console on stderr: progress bars, warnings and errors."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: attrs objects as dicts, Decimals as strings, datetimes
    as ISO 8601, enums as their values, secrets hidden."""
    from smskit.config import Secret

    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Secret):
        return "********"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if attrs.has(type(value)):
        return {f.name.lstrip("_"): to_jsonable(getattr(value, f.name))
                for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return str(value)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (UTF-8, accents kept)."""
    click.echo(json.dumps(to_jsonable(data), ensure_ascii=False, indent=2))


def cells(*values: Any) -> List[Any]:
    """Table cells as plain rich Texts (so ``[odoo]`` in a value is not read as markup)."""
    from rich.text import Text

    return [value if isinstance(value, Text) else Text("-" if value is None else str(value))
            for value in values]


def brl(value: Optional[Decimal]) -> str:
    """``Decimal("1234.5")`` -> ``"R$ 1.234,50"``; ``None`` -> ``"-"``."""
    if value is None:
        return "-"
    text = f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return f"R$ {text}"


def local_time(value: Optional[dt.datetime], tz: str) -> str:
    """An aware datetime shown in the installation's zone: ``2026-11-27 08:00 -03``."""
    if value is None:
        return "-"
    from smskit.timeutil import zone

    local = value.astimezone(zone(tz))
    offset = local.strftime("%z")
    short = offset[:3] if offset.endswith("00") else offset
    return f"{local:%Y-%m-%d %H:%M} {short}"


def require_server_extra(what: str) -> None:
    """Fail with the install line when Starlette/uvicorn (the ``server`` extra) are missing."""
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(f"{what} needs {' and '.join(missing)}: "
                                 "pip install 'smskit-sdk[server]'")


# -- input parsers -------------------------------------------------------------------------------
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


def parse_when(value: str, tz: str, now: Optional[dt.datetime] = None) -> dt.datetime:
    """Read ``--at``: ISO 8601 (a naive one is local time in ``tz``), or ``HH:MM`` meaning the
    next such time in ``tz`` (today, or tomorrow if it has passed). Returns aware UTC."""
    from smskit.models import utcnow
    from smskit.timeutil import ensure_aware, zone

    text = value.strip()
    tzinfo = zone(tz)
    match = _HHMM.match(text)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            raise ValidationError(f"not a time of day: {value!r} (use HH:MM, 00:00 to 23:59)")
        current = (now or utcnow()).astimezone(tzinfo)
        candidate = dt.datetime.combine(current.date(), dt.time(hour, minute), tzinfo=tzinfo)
        if candidate <= current:
            candidate = dt.datetime.combine(current.date() + dt.timedelta(days=1),
                                            dt.time(hour, minute), tzinfo=tzinfo)
        return candidate.astimezone(dt.timezone.utc)
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise ValidationError(
            f"not a date/time: {value!r} (use ISO 8601 like 2026-11-27T09:00, or HH:MM)"
        ) from exc
    return ensure_aware(parsed, tzinfo)


def parse_vars(pairs: Sequence[str]) -> Dict[str, str]:
    """``("nome=Ana", "valor=R$ 10")`` -> ``{"nome": "Ana", "valor": "R$ 10"}``."""
    out: Dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--var")
        out[name.strip()] = value
    return out


# -- streaming CSV -------------------------------------------------------------------------------
_DELIMITERS = (",", ";", "\t", "|")


class CsvSource:
    """Stream a CSV file row by row (never the whole file in memory), counting bytes read.

    The delimiter is guessed from the header line (``,``, ``;``, tab or ``|``) unless given;
    header names are stripped of spaces; a UTF-8 byte-order mark (Excel) is ignored::

        with CsvSource(path) as source:
            source.require_column("phone")
            for row in source.rows():
                ...
    """

    def __init__(self, path: Path, *, encoding: str = "utf-8-sig",
                 delimiter: Optional[str] = None) -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.delimiter = delimiter
        self.size = 0
        self.bytes_read = 0
        self.line = 0
        self._fh: Any = None
        self._reader: Optional[csv.DictReader[str]] = None

    def __enter__(self) -> CsvSource:
        try:
            "".encode(self.encoding)
        except LookupError as exc:
            raise ConfigurationError(f"unknown encoding {self.encoding!r}") from exc
        self._fh = open(self.path, "rb")
        self.size = os.fstat(self._fh.fileno()).st_size
        self._check_encoding()
        lines = self._lines()
        header = next(lines, None)
        if header is None:
            raise ValidationError(f"{self.path} is empty: a header line is needed")
        delimiter = self.delimiter or max(_DELIMITERS, key=header.count)
        if delimiter not in header and self.delimiter is None:
            delimiter = ","
        names = next(csv.reader([header], delimiter=delimiter))
        fieldnames = [name.strip() for name in names]
        self._reader = csv.DictReader(lines, fieldnames=fieldnames, delimiter=delimiter)
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if self._fh is not None:
            self._fh.close()

    def _check_encoding(self) -> None:
        """Decode the whole file once (streamed) before any row is handed out: a line in
        another encoding fails the command before anything was sent or stored, not after the
        rows above it went out (a re-run with the right --encoding would send them twice)."""
        from smskit.outreach.audience import undecodable_line

        bad = undecodable_line(self._fh, self.encoding)
        if bad is not None:
            raise ValidationError(
                f"{self.path}: line {bad[0]} is not valid {self.encoding} ({bad[1]}), so no "
                "row was used; try --encoding cp1252 (a CSV saved by Excel in Portuguese) or "
                "--encoding latin-1")
        self._fh.seek(0)

    def _lines(self) -> Iterator[str]:
        for raw in self._fh:  # every line decodes: _check_encoding read them all first
            self.line += 1
            self.bytes_read += len(raw)
            yield raw.decode(self.encoding)

    @property
    def fieldnames(self) -> List[str]:
        """The header's column names."""
        if self._reader is None or self._reader.fieldnames is None:
            raise ValidationError(f"{self.path} was not opened")
        return list(self._reader.fieldnames)

    def require_column(self, name: str) -> None:
        """Fail (before anything is sent) when the header lacks ``name``."""
        if name not in self.fieldnames:
            shown = ", ".join(self.fieldnames) or "none"
            raise ValidationError(
                f"{self.path} has no column {name!r} (columns: {shown}); "
                "choose it with --phone-column"
            )

    def rows(self) -> Iterator[Dict[str, Any]]:
        """Each data row as ``{column: value}`` (a short row's missing cells are absent). A
        row of empty cells (``;;;``: what Excel writes for a row it once formatted) is
        skipped, like an empty line."""
        if self._reader is None:
            raise ValidationError(f"{self.path} was not opened")
        from smskit.outreach.audience import csv_cells

        for row in self._reader:
            cells = csv_cells(row)
            if cells is not None:
                yield cells
