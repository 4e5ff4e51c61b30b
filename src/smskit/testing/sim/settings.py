"""Settings of a simulator: a mixin for an ``attrs.frozen`` settings class, and the converters
and validators its fields use.

Every setting is validated when set (``Settings(...)`` or ``simulator.configure(...)``); a bad
value raises :class:`smskit.errors.ConfigurationError` naming the setting::

    @attrs.frozen(kw_only=True)
    class AcmeSimulatorConfig(SimulatorSettings):
        secret_settings: ClassVar[Tuple[str, ...]] = ("token",)

        token: str = attrs.field(default="sim-token", repr=False, validator=check_non_empty)
        seed: Optional[int] = attrs.field(default=0, converter=to_optional_int)
        callback_drop_rate: float = rate_field()
        sent_delay: float = seconds_field(0.0)
        ...
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, TypeVar, cast

import attrs

from smskit.errors import ConfigurationError

__all__ = [
    "SimulatorSettings",
    "check_non_empty",
    "check_non_negative",
    "check_one_of",
    "check_positive",
    "check_rate",
    "rate_field",
    "seconds_field",
    "to_decimal",
    "to_float",
    "to_int",
    "to_optional_int",
]

_Settings = TypeVar("_Settings", bound="SimulatorSettings")
#: What ``as_json`` shows instead of a secret setting.
_MASK = "********"


class SimulatorSettings:
    """Base of a simulator's ``attrs.frozen`` settings class: :meth:`changed` (what
    ``simulator.configure`` uses) and :meth:`as_json` (what ``GET /_sim/config`` answers)."""

    __slots__ = ()

    #: Settings :meth:`as_json` masks when they are set (tokens, passwords).
    secret_settings: ClassVar[Tuple[str, ...]] = ()

    def changed(self: _Settings, **changes: Any) -> _Settings:
        """A validated copy with ``changes``; an unknown name is a ConfigurationError."""
        # cast: this mixin is no attrs class, the settings classes deriving from it are.
        names = {a.name for a in attrs.fields(cast(Any, type(self)))}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigurationError(f"unknown simulator setting(s): {', '.join(unknown)}")
        try:
            # cast: mypy's attrs plugin only knows the concrete settings class (self's type).
            evolved: _Settings = attrs.evolve(cast(Any, self), **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad simulator setting: {exc}") from exc
        return evolved

    def as_json(self) -> Dict[str, Any]:
        """The settings as JSON-friendly values (:meth:`json_value`), in field order, with the
        :attr:`secret_settings` that are set shown as ``"********"``."""
        out: Dict[str, Any] = {}
        for field in attrs.fields(cast(Any, type(self))):
            out[field.name] = self.json_value(field.name, getattr(self, field.name))
        for name in self.secret_settings:
            if out.get(name):
                out[name] = _MASK
        return out

    def json_value(self, name: str, value: Any) -> Any:
        """One setting as JSON: a frozenset sorted, a Decimal as a string, a mapping with
        string keys (and its frozenset values sorted); anything else as it is. Override it for
        a setting of another shape (call this for the rest)."""
        if isinstance(value, frozenset):
            return sorted(value)
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dict):
            return {str(k): sorted(v) if isinstance(v, frozenset) else v
                    for k, v in value.items()}
        return value


# -- converters ---------------------------------------------------------------------------------

def to_float(value: Any) -> float:
    """A number (not a bool) as a float."""
    if isinstance(value, bool):
        raise ConfigurationError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"expected a number, got {value!r}") from exc


def to_int(value: Any) -> int:
    """A whole number (not a bool, not a float with a fraction) as an int."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigurationError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"expected an integer, got {value!r}") from exc


def to_optional_int(value: Any) -> Optional[int]:
    """``None``, or :func:`to_int`."""
    return None if value is None else to_int(value)


def to_decimal(value: Any) -> Decimal:
    """A number (not a bool) as a Decimal (through its string, so ``0.1`` stays ``0.1``)."""
    if isinstance(value, bool):
        raise ConfigurationError(f"expected a decimal number, got {value!r}")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigurationError(f"expected a decimal number, got {value!r}") from exc


# -- validators (attrs' signature: instance, attribute, value) ----------------------------------

def check_rate(_inst: Any, attribute: attrs.Attribute[float], value: float) -> None:
    """A probability: between 0 and 1."""
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def check_non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """At least 0 (``None`` passes, for optional settings)."""
    if value is not None and value < 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


def check_positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """More than 0."""
    if value <= 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def check_non_empty(_inst: Any, attribute: attrs.Attribute[str], value: str) -> None:
    """A string with something in it."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{attribute.name} must be a non-empty string")


def check_one_of(*choices: str) -> Callable[[Any, attrs.Attribute[str], str], None]:
    """A validator accepting only ``choices``."""
    def check(_inst: Any, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in choices:
            raise ConfigurationError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


# -- fields ---------------------------------------------------------------------------------------

def rate_field() -> float:
    """A probability setting, off (0.0) by default: a fault or chaos switch."""
    value: float = attrs.field(default=0.0, converter=to_float, validator=check_rate)
    return value


def seconds_field(default: float) -> float:
    """A duration in seconds, at least 0."""
    value: float = attrs.field(default=default, converter=to_float, validator=check_non_negative)
    return value
