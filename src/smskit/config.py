"""Settings: keywords, ``SMSKIT_*`` environment variables and an optional ``smskit.toml``.

Every setting has an environment variable (``SMSKIT_DATABASE_URL``), a key in the
``[smskit]`` table of ``smskit.toml`` (``database_url``) and a keyword of :meth:`Settings.load`
and :class:`~smskit.SmsKit` (``database_url=...``). Explicit keywords win over the
environment, which wins over ``smskit.toml``, which wins over the defaults. Plugins read
their own keys with :meth:`Settings.get` (``settings.get("kolmeya_token")`` reads
``SMSKIT_KOLMEYA_TOKEN`` or ``kolmeya_token``). Secrets are wrapped in :class:`Secret` so
they never show in a repr, a log line or an exception.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import attrs

from smskit.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.8 CI
    import tomli as tomllib

__all__ = ["DEFAULT_OPTOUT_KEYWORDS", "Secret", "Settings", "redact"]

DEFAULT_OPTOUT_KEYWORDS: Tuple[str, ...] = ("SAIR", "PARAR", "STOP", "CANCELAR", "DESCADASTRAR")

_SECRET_WORDS = ("token", "secret", "password", "key")


@attrs.frozen(repr=False)
class Secret:
    """A string that does not show itself: ``repr`` and ``str`` print ``'********'``."""

    _value: str

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redact(text: str, *secrets: Optional[Union[str, Secret]]) -> str:
    """Replace every occurrence of the given secrets in ``text`` with ``********``."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, "********")
    return text


def _is_secret_key(key: str) -> bool:
    return any(word in key for word in _SECRET_WORDS)


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{key}: expected a boolean (true/false), got {value!r}")


def _parse_list(value: str) -> Tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _optout_keywords(keywords: Tuple[str, ...]) -> Tuple[str, ...]:
    """The ``optout_keywords`` setting, upper-cased. A reply opts out by its first word
    (:func:`smskit.policy.is_optout`), so a keyword that is not one word of letters and digits
    ("NÃO QUERO", "SAIR.") could never match: a :class:`ConfigurationError`, not opt-outs
    silently lost."""
    from smskit.policy import normalize_keyword  # policy imports this module

    words = {k: normalize_keyword(k) for k in keywords}
    bad = [k for k, word in words.items() if not (word.isascii() and word.isalnum())]
    if bad:
        raise ConfigurationError(
            f"optout_keywords: {', '.join(repr(k) for k in bad)} is not a single word; a reply "
            "opts out when its first word is a keyword (e.g. SAIR,PARAR,PARE)")
    return tuple(k.upper() for k in keywords)


@attrs.frozen(kw_only=True, repr=False)
class Settings:
    """Everything configurable, with the embedded defaults (SQLite, America/Sao_Paulo)."""

    database_url: str = "sqlite:///smskit.db"
    provider: str = "kolmeya"
    public_url: Optional[str] = None
    webhook_secret: Optional[Secret] = None
    default_region: str = "BR"
    allow_landlines: bool = False
    price_per_segment: Decimal = Decimal("0.08")
    max_segments: int = 10
    optout_keywords: Tuple[str, ...] = DEFAULT_OPTOUT_KEYWORDS
    timezone: str = "America/Sao_Paulo"
    quiet_hours: Optional[str] = None
    quiet_days: Tuple[str, ...] = ()
    holidays: Tuple[dt.date, ...] = ()
    plugins: Optional[Tuple[str, ...]] = None
    disable_plugins: Tuple[str, ...] = ()
    values: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        # Checked when the settings are read, not per message: a cap below one segment or a
        # negative price would otherwise reject every message of a bulk send, one by one.
        if isinstance(self.max_segments, bool) or not isinstance(self.max_segments, int) \
                or self.max_segments < 1:
            raise ConfigurationError(
                f"max_segments: expected a whole number of at least 1, got {self.max_segments!r}")
        try:
            price = Decimal(str(self.price_per_segment))
        except InvalidOperation:
            price = Decimal("NaN")
        if not price.is_finite() or price < 0:
            raise ConfigurationError(
                f"price_per_segment: expected an amount of at least 0 (like 0.08), got "
                f"{str(self.price_per_segment)!r}")

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A plugin's raw setting by lower-case key (``"kolmeya_token"``), or ``default``."""
        return self.values.get(key.lower(), default)

    def secret(self, key: str) -> Optional[Secret]:
        """Like :meth:`get` but wrapped in a :class:`Secret` (``None`` when unset or empty)."""
        value = self.get(key)
        return Secret(value) if value else None

    def number(self, key: str, default: float, *, minimum: float = 0.0,
               integer: bool = False, exclusive: bool = False) -> float:
        """A numeric setting by lower-case key (``"2.5"``), ``default`` when unset or empty; a
        value that is not a finite number (a whole one with ``integer``), or is below
        ``minimum`` (or equal to it with ``exclusive``), raises :class:`ConfigurationError`
        naming the key."""
        raw = (self.get(key) or "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if value != value or value in (float("inf"), float("-inf")) or (
                integer and not value.is_integer()):
            kind = "a whole number" if integer else "a number"
            raise ConfigurationError(f"{key}: expected {kind}, got {raw!r}")
        if exclusive and value <= minimum:
            raise ConfigurationError(f"{key}: must be more than {minimum:g}, got {raw!r}")
        if value < minimum:
            raise ConfigurationError(f"{key}: must be at least {minimum:g}, got {raw!r}")
        return value

    def count(self, key: str, default: int, *, minimum: int = 1) -> int:
        """A whole-number setting (``"5"``), ``default`` when unset or empty; anything else
        than a whole number of at least ``minimum`` raises :class:`ConfigurationError`."""
        return int(self.number(key, default, minimum=minimum, integer=True))

    def flag(self, key: str, default: bool) -> bool:
        """A yes/no setting (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``),
        ``default`` when unset or empty; any other text raises :class:`ConfigurationError`
        rather than being read as "no" (a typo must not switch a check off)."""
        raw = self.get(key)
        if raw is None or not raw.strip():
            return default
        return _parse_bool(key, raw)

    def __repr__(self) -> str:
        shown = {
            k: ("********" if _is_secret_key(k) else _redact_url(v))
            for k, v in sorted(self.values.items())
        }
        return (
            f"Settings(database_url={_redact_url(self.database_url)!r}, "
            f"provider={self.provider!r}, "
            f"public_url={self.public_url!r}, values={shown!r})"
        )

    @classmethod
    def load(
        cls,
        environ: Optional[Mapping[str, str]] = None,
        config_file: Optional[Union[str, Path]] = None,
        **overrides: Any,
    ) -> Settings:
        """Read ``smskit.toml`` (``config_file``, ``$SMSKIT_CONFIG`` or ./smskit.toml if
        present), then ``SMSKIT_*`` variables from ``environ`` (default ``os.environ``), then
        ``overrides``."""
        env = os.environ if environ is None else environ
        values: Dict[str, str] = {}
        path = config_file or env.get("SMSKIT_CONFIG")
        if path is None and Path("smskit.toml").is_file():
            path = "smskit.toml"
        if path is not None:
            values.update(_read_toml(Path(path)))
        for key, value in env.items():
            if key.startswith("SMSKIT_") and key != "SMSKIT_CONFIG":
                values[key[len("SMSKIT_"):].lower()] = value
        typed: Dict[str, Any] = {}
        fields = attrs.fields_dict(cls)
        for name, override in overrides.items():
            key = name.lower()
            if override is None:
                continue
            if key == "values":
                raise ConfigurationError("pass plugin settings as keywords (kolmeya_token=...), "
                                         "not values=")
            if isinstance(override, (str, list, tuple)) or key not in fields:
                # Read as the text an SMSKIT_* variable would hold: a plugin's key, or a list.
                values[key] = _as_text(override)
            else:
                typed[key] = override
        return cls._from_values(values, typed)

    @classmethod
    def resolve(cls, settings: Optional[Settings] = None, **options: Any) -> Settings:
        """The settings a kit is built with: ``settings`` as given, else :meth:`load` with
        ``options`` as overrides (keywords > ``SMSKIT_*`` environment > ``smskit.toml`` >
        defaults; ``config_file`` names the TOML file). Giving both is an error: a
        ``Settings`` value is complete, so keywords next to it would be ignored silently."""
        if settings is None:
            return cls.load(**options)
        if options:
            raise ConfigurationError(
                f"give a Settings value or settings as keywords, not both (got "
                f"{', '.join(sorted(options))} next to a Settings); use attrs.evolve(settings, "
                "...) to change a Settings value")
        return settings

    @classmethod
    def _from_values(cls, values: Dict[str, str], typed: Mapping[str, Any]) -> Settings:
        kwargs: Dict[str, Any] = {"values": values}
        for name in ("database_url", "provider", "default_region", "timezone"):
            if values.get(name):
                kwargs[name] = values[name]
        for name in ("public_url", "quiet_hours"):  # optional: empty means unset
            if name in values:
                kwargs[name] = values[name] or None
        if values.get("webhook_secret"):
            kwargs["webhook_secret"] = Secret(values["webhook_secret"])
        if "allow_landlines" in values:
            kwargs["allow_landlines"] = _parse_bool("allow_landlines", values["allow_landlines"])
        if "price_per_segment" in values:
            try:
                kwargs["price_per_segment"] = Decimal(values["price_per_segment"])
            except InvalidOperation as exc:
                raise ConfigurationError(
                    f"price_per_segment: not a number: {values['price_per_segment']!r}"
                ) from exc
        if "max_segments" in values:
            try:
                kwargs["max_segments"] = int(values["max_segments"])
            except ValueError as exc:
                raise ConfigurationError(
                    f"max_segments: not an integer: {values['max_segments']!r}"
                ) from exc
        if "optout_keywords" in values:
            kwargs["optout_keywords"] = _optout_keywords(_parse_list(values["optout_keywords"]))
        if "quiet_days" in values:
            kwargs["quiet_days"] = _parse_list(values["quiet_days"])
        if "holidays" in values:
            try:
                kwargs["holidays"] = tuple(
                    dt.date.fromisoformat(d) for d in _parse_list(values["holidays"])
                )
            except ValueError as exc:
                raise ConfigurationError(f"holidays: expected YYYY-MM-DD dates: {exc}") from exc
        if "plugins" in values:
            kwargs["plugins"] = _parse_list(values["plugins"])
        if "disable_plugins" in values:
            kwargs["disable_plugins"] = _parse_list(values["disable_plugins"])
        kwargs.update(typed)
        return cls(**kwargs)


def _as_text(value: Any) -> str:
    """A keyword setting as the text an ``SMSKIT_*`` variable would hold."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


def _read_toml(path: Path) -> Dict[str, str]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("smskit", data)
    out: Dict[str, str] = {}
    _flatten(table, "", out)
    return out


def _flatten(table: Mapping[str, Any], prefix: str, out: Dict[str, str]) -> None:
    for key, value in table.items():
        name = f"{prefix}{key}".lower()
        if isinstance(value, Mapping):
            _flatten(value, f"{name}_", out)
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)


def _redact_url(url: str) -> str:
    """``odoo://user:pw@host/db`` -> ``odoo://user:********@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, colon, _pw = creds.partition(":")
    return f"{scheme}://{user}{':********' if colon else ''}@{host}"
