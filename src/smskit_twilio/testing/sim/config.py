"""The Twilio simulator's settings: documented behaviour is fixed, the rest is a knob here.

Settings are validated when set (``SimulatorConfig(...)`` or ``simulator.configure(...)``); a bad
value raises :class:`smskit.errors.ConfigurationError` naming the setting.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional

import attrs

from smskit.errors import ConfigurationError
from smskit_twilio.wire import is_e164

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_NUMBER", "DEFAULT_SERVICE_SID", "FINAL_STATUSES",
           "SimulatorConfig"]

DEFAULT_ACCOUNT_SID = "AC" + "5f1a" * 8
DEFAULT_SERVICE_SID = "MG" + "5f1a" * 8
#: The simulated account's one phone number (a sender and the number replies come to).
DEFAULT_NUMBER = "+15005550006"
#: Outcomes a message can end in (with the error code each one carries).
FINAL_STATUSES = ("delivered", "undelivered", "failed")


def _phones(value: Any) -> FrozenSet[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable):
        raise ConfigurationError(f"expected a list of E.164 numbers, got {value!r}")
    out = frozenset(str(v).strip() for v in value)
    bad = sorted(p for p in out if not is_e164(p))
    if bad:
        raise ConfigurationError(f"not E.164 numbers: {', '.join(bad)}")
    return out


def _services(value: Any) -> Dict[str, FrozenSet[str]]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"services: expected a mapping MG... -> numbers, got {value!r}")
    return {str(sid): _phones(numbers) for sid, numbers in value.items()}


def _outcomes(value: Any) -> Dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"outcomes: expected a mapping status -> share, got {value!r}")
    out: Dict[str, float] = {}
    for status, share in value.items():
        weight = _to_float(share)
        if status not in FINAL_STATUSES or weight < 0:
            raise ConfigurationError(
                f"outcomes: {status!r} must be one of {FINAL_STATUSES} with a share >= 0")
        out[str(status)] = weight
    if sum(out.values()) <= 0:
        raise ConfigurationError("outcomes: the shares must not all be zero")
    return out


def _forced(value: Any) -> Dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"forced_outcomes: expected phone -> status, got {value!r}")
    out = {str(k): str(v) for k, v in value.items()}
    for phone, status in out.items():
        if not is_e164(phone) or status not in FINAL_STATUSES:
            raise ConfigurationError(f"forced_outcomes: bad entry {phone!r}: {status!r}")
    return out


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigurationError(f"expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"expected a number, got {value!r}") from exc


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigurationError(f"expected an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"expected an integer, got {value!r}") from exc


def _to_opt_int(value: Any) -> Optional[int]:
    return None if value is None else _to_int(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"expected a boolean, got {value!r}")


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ConfigurationError(f"expected a decimal number, got {value!r}")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigurationError(f"expected a decimal number, got {value!r}") from exc


def _to_names(value: Any) -> FrozenSet[str]:
    if isinstance(value, str):
        value = [value]
    return frozenset(str(v) for v in value)


def _rate(_inst: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _non_negative(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise ConfigurationError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value <= 0:
        raise ConfigurationError(f"{attribute.name} must be > 0, got {value!r}")


def _non_empty(_inst: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{attribute.name} must be a non-empty string")


def _rate_field() -> float:
    value: float = attrs.field(default=0.0, converter=_to_float, validator=_rate)
    return value


def _seconds(default: float) -> float:
    value: float = attrs.field(default=default, converter=_to_float, validator=_non_negative)
    return value


#: The endpoints a fault may be limited to (``fault_endpoints``).
ENDPOINTS = frozenset({"messages.create", "messages.list", "messages.fetch", "balance"})


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """Everything the simulator can be told (frozen: change it with ``simulator.configure``)."""

    #: The account: its SID (in every path), auth token (basic auth password and the key that
    #: signs callbacks) and, optionally, one API key that may authenticate instead.
    account_sid: str = attrs.field(default=DEFAULT_ACCOUNT_SID, validator=_non_empty)
    auth_token: str = attrs.field(default="sim-auth-token", repr=False, validator=_non_empty)
    api_key_sid: Optional[str] = None
    api_key_secret: Optional[str] = attrs.field(default=None, repr=False)
    #: The account's phone numbers (valid ``From`` values) and Messaging Services.
    numbers: FrozenSet[str] = attrs.field(default=frozenset({DEFAULT_NUMBER}), converter=_phones)
    services: Dict[str, FrozenSet[str]] = attrs.field(
        factory=lambda: {DEFAULT_SERVICE_SID: frozenset({DEFAULT_NUMBER})}, converter=_services)
    #: Where incoming messages are POSTed (the number's "A message comes in" webhook).
    inbound_url: Optional[str] = None
    #: Add ``OptOutType`` to keyword messages (Advanced Opt-Out of a Messaging Service).
    advanced_opt_out: bool = attrs.field(default=False, converter=_to_bool)
    #: Numbers refused at creation: invalid (21211), not reachable by SMS (21612), landlines
    #: (21614), and numbers that already opted out of every sender (21610).
    invalid: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)
    unreachable: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)
    landlines: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)
    opted_out: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)
    seed: Optional[int] = attrs.field(default=0, converter=_to_opt_int)
    #: Final status -> share, drawn with the seeded RNG; per-number overrides.
    outcomes: Dict[str, float] = attrs.field(
        factory=lambda: {"delivered": 0.9, "undelivered": 0.07, "failed": 0.03},
        converter=_outcomes)
    forced_outcomes: Dict[str, str] = attrs.field(factory=dict, converter=_forced)
    undelivered_error: int = attrs.field(default=30003, converter=_to_int)
    failed_error: int = attrs.field(default=30008, converter=_to_int)
    #: Seconds from creation to ``sent`` and to the final status.
    sent_delay: float = _seconds(0.0)
    delivery_delay: float = _seconds(0.0)
    auto_progress: bool = attrs.field(default=False, converter=_to_bool)
    tick: float = attrs.field(default=0.05, converter=_to_float, validator=_positive)
    callback_timeout: float = attrs.field(default=5.0, converter=_to_float, validator=_positive)
    #: Attempts per callback on a non-2xx answer or a connection error.
    callback_max_attempts: int = attrs.field(default=1, converter=_to_int, validator=_positive)
    callback_backoff: float = _seconds(0.5)
    callback_drop_rate: float = _rate_field()
    callback_duplicate_rate: float = _rate_field()
    callback_shuffle: bool = attrs.field(default=False, converter=_to_bool)
    balance: Decimal = attrs.field(default=Decimal("20.00"), converter=_to_decimal)
    currency: str = "USD"
    price_per_segment: Decimal = attrs.field(default=Decimal("0.0079"), converter=_to_decimal)
    #: The list endpoint's default ``PageSize``.
    page_size: int = attrs.field(default=50, converter=_to_int, validator=_positive)
    #: Faults: each rate is a probability per request, drawn with the seeded RNG.
    fail_429_rate: float = _rate_field()
    #: ``Retry-After`` seconds sent with a 429 (``None``: no header).
    retry_after: Optional[int] = attrs.field(default=1, converter=_to_opt_int,
                                             validator=_non_negative)
    fail_500_rate: float = _rate_field()
    #: Creates only: the message **is** created (and will be sent), then the answer is a 500.
    error_after_accept_rate: float = _rate_field()
    #: Creates only: the message **is** created, then the answer is held ``hang_seconds``.
    timeout_after_accept_rate: float = _rate_field()
    hang_seconds: float = _seconds(30.0)
    slow_seconds: float = _seconds(0.0)
    #: Endpoints the faults apply to (see :data:`ENDPOINTS`); empty means all of them.
    fault_endpoints: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_names)
    #: Creates are faulty only when their ``To`` is one of these (empty: any ``To``).
    fault_numbers: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)

    def __attrs_post_init__(self) -> None:
        unknown = sorted(self.fault_endpoints - ENDPOINTS)
        if unknown:
            raise ConfigurationError(f"fault_endpoints: unknown {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(ENDPOINTS))})")

    def changed(self, **changes: Any) -> SimulatorConfig:
        """A validated copy with ``changes``; an unknown name is a ConfigurationError."""
        names = {a.name for a in attrs.fields(SimulatorConfig)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigurationError(f"unknown simulator setting(s): {', '.join(unknown)}")
        try:
            return attrs.evolve(self, **changes)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad simulator setting: {exc}") from exc

    def as_json(self) -> Dict[str, Any]:
        """The settings as JSON-friendly values, with the secrets hidden."""
        out: Dict[str, Any] = {}
        for field in attrs.fields(SimulatorConfig):
            value = getattr(self, field.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, dict):
                value = {k: sorted(v) if isinstance(v, frozenset) else v
                         for k, v in value.items()}
            out[field.name] = value
        out["auth_token"] = "********"  # noqa: S105 - a mask, not a password
        if self.api_key_secret:
            out["api_key_secret"] = "********"  # noqa: S105 - a mask
        return out
