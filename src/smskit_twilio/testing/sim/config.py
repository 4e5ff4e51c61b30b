"""The Twilio simulator's settings: documented behaviour is fixed, the rest is a knob here.

Settings are validated when set (``SimulatorConfig(...)`` or ``simulator.configure(...)``); a bad
value raises :class:`smskit.errors.ConfigurationError` naming the setting.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

import attrs

from smskit.errors import ConfigurationError
from smskit.testing.sim.settings import (
    SimulatorSettings,
    check_non_empty,
    check_non_negative,
    check_positive,
    rate_field,
    seconds_field,
    to_decimal,
    to_float,
    to_int,
    to_optional_int,
)
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
        weight = to_float(share)
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


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"expected a boolean, got {value!r}")


def _to_names(value: Any) -> FrozenSet[str]:
    if isinstance(value, str):
        value = [value]
    return frozenset(str(v) for v in value)


#: The endpoints a fault may be limited to (``fault_endpoints``).
ENDPOINTS = frozenset({"messages.create", "messages.list", "messages.fetch", "balance"})


@attrs.frozen(kw_only=True)
class SimulatorConfig(SimulatorSettings):
    """Everything the simulator can be told (frozen: change it with ``simulator.configure``)."""

    #: Masked by :meth:`as_json` (the API key secret when there is one).
    secret_settings: ClassVar[Tuple[str, ...]] = ("auth_token", "api_key_secret")

    #: The account: its SID (in every path), auth token (basic auth password and the key that
    #: signs callbacks) and, optionally, one API key that may authenticate instead.
    account_sid: str = attrs.field(default=DEFAULT_ACCOUNT_SID, validator=check_non_empty)
    auth_token: str = attrs.field(default="sim-auth-token", repr=False, validator=check_non_empty)
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
    seed: Optional[int] = attrs.field(default=0, converter=to_optional_int)
    #: Final status -> share, drawn with the seeded RNG; per-number overrides.
    outcomes: Dict[str, float] = attrs.field(
        factory=lambda: {"delivered": 0.9, "undelivered": 0.07, "failed": 0.03},
        converter=_outcomes)
    forced_outcomes: Dict[str, str] = attrs.field(factory=dict, converter=_forced)
    undelivered_error: int = attrs.field(default=30003, converter=to_int)
    failed_error: int = attrs.field(default=30008, converter=to_int)
    #: Seconds from creation to ``sent`` and to the final status.
    sent_delay: float = seconds_field(0.0)
    delivery_delay: float = seconds_field(0.0)
    auto_progress: bool = attrs.field(default=False, converter=_to_bool)
    tick: float = attrs.field(default=0.05, converter=to_float, validator=check_positive)
    callback_timeout: float = attrs.field(default=5.0, converter=to_float, validator=check_positive)
    #: Attempts per callback on a non-2xx answer or a connection error.
    callback_max_attempts: int = attrs.field(default=1, converter=to_int, validator=check_positive)
    callback_backoff: float = seconds_field(0.5)
    callback_drop_rate: float = rate_field()
    callback_duplicate_rate: float = rate_field()
    callback_shuffle: bool = attrs.field(default=False, converter=_to_bool)
    balance: Decimal = attrs.field(default=Decimal("20.00"), converter=to_decimal)
    currency: str = "USD"
    price_per_segment: Decimal = attrs.field(default=Decimal("0.0079"), converter=to_decimal)
    #: The list endpoint's default ``PageSize``.
    page_size: int = attrs.field(default=50, converter=to_int, validator=check_positive)
    #: Faults: each rate is a probability per request, drawn with the seeded RNG.
    fail_429_rate: float = rate_field()
    #: ``Retry-After`` seconds sent with a 429 (``None``: no header).
    retry_after: Optional[int] = attrs.field(default=1, converter=to_optional_int,
                                             validator=check_non_negative)
    fail_500_rate: float = rate_field()
    #: Creates only: the message **is** created (and will be sent), then the answer is a 500.
    error_after_accept_rate: float = rate_field()
    #: Creates only: the message **is** created, then the answer is held ``hang_seconds``.
    timeout_after_accept_rate: float = rate_field()
    hang_seconds: float = seconds_field(30.0)
    slow_seconds: float = seconds_field(0.0)
    #: Endpoints the faults apply to (see :data:`ENDPOINTS`); empty means all of them.
    fault_endpoints: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_names)
    #: Creates are faulty only when their ``To`` is one of these (empty: any ``To``).
    fault_numbers: FrozenSet[str] = attrs.field(factory=frozenset, converter=_phones)

    def __attrs_post_init__(self) -> None:
        unknown = sorted(self.fault_endpoints - ENDPOINTS)
        if unknown:
            raise ConfigurationError(f"fault_endpoints: unknown {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(ENDPOINTS))})")
