"""The simulator's settings: every confirmed behaviour is fixed, every unknown is a knob here.

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
    check_one_of,
    check_positive,
    rate_field,
    to_decimal,
    to_float,
    to_int,
    to_optional_int,
)
from smskit.timeutil import zone
from smskit_kolmeya.testing.sim.rules import national_digits

__all__ = ["FINAL_CODES", "STATUS_TEXT", "SimulatorConfig"]

#: Message status codes (docs/kolmeya.md, "What is sent"). Only 2 and 3 are confirmed strings.
STATUS_TEXT: Dict[int, str] = {
    1: "tentando enviar",
    2: "enviado",
    3: "entregue",
    4: "não entregue",
    5: "rejeitado",
    6: "expirada",
}
FINAL_CODES: FrozenSet[int] = frozenset({3, 4, 5, 6})


def _to_phone_set(value: Any) -> FrozenSet[str]:
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, Iterable):
        raise ConfigurationError(f"expected a list of phone numbers, got {value!r}")
    out = set()
    for item in value:
        digits = national_digits(item)
        if digits is None:
            raise ConfigurationError(f"not a phone number (digits only): {item!r}")
        out.add(digits)
    return frozenset(out)


def _to_outcomes(value: Any) -> Dict[int, float]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"outcomes: expected a mapping code -> share, got {value!r}")
    out: Dict[int, float] = {}
    for key, share in value.items():
        try:
            code, weight = int(key), float(share)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"outcomes: bad entry {key!r}: {share!r}") from exc
        if code not in FINAL_CODES or weight < 0:
            raise ConfigurationError(
                f"outcomes: {key!r} must be a final status code (3-6) with a share >= 0"
            )
        out[code] = weight
    if sum(out.values()) <= 0:
        raise ConfigurationError("outcomes: the shares must not all be zero")
    return out


def _to_forced(value: Any) -> Dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"forced_outcomes: expected a mapping phone -> code: {value!r}")
    out: Dict[str, int] = {}
    for phone, code in value.items():
        digits = national_digits(phone)
        if digits is None or not isinstance(code, int) or code not in FINAL_CODES:
            raise ConfigurationError(f"forced_outcomes: bad entry {phone!r}: {code!r}")
        out[digits] = code
    return out


def _to_cost_centres(value: Any) -> Tuple[Tuple[int, str], ...]:
    out = []
    for item in value:
        if isinstance(item, Mapping):
            item = (item.get("id"), item.get("name"))
        centre_id, name = item
        if not isinstance(centre_id, int) or not isinstance(name, str):
            raise ConfigurationError(f"cost_centres: expected (int id, str name), got {item!r}")
        out.append((centre_id, name))
    if not out:
        raise ConfigurationError("cost_centres: at least one cost centre is needed")
    return tuple(out)


def _to_str_set(value: Any) -> FrozenSet[str]:
    if isinstance(value, str):
        value = [value]
    return frozenset(str(v).strip("/") for v in value)


def _known_zone(_inst: Any, _attribute: attrs.Attribute[str], value: str) -> None:
    zone(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no",
                                                    "off"):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(f"expected a boolean, got {value!r}")


@attrs.frozen(kw_only=True)
class SimulatorConfig(SimulatorSettings):
    """Everything the simulator can be told (frozen: change it with ``simulator.configure``).

    Confirmed Kolmeya behaviour is not configurable; the unknowns are.
    """

    #: Masked by :meth:`as_json`.
    secret_settings: ClassVar[Tuple[str, ...]] = ("token",)

    #: The one Bearer token the API accepts.
    token: str = attrs.field(default="sim-token", repr=False, validator=check_non_empty)
    #: Seed of the one RNG behind outcomes and faults (``None``: not reproducible).
    seed: Optional[int] = attrs.field(default=0, converter=to_optional_int)
    #: National numbers (``"48991234567"``) answered in ``blacklist`` / ``not_disturb`` /
    #: ``invalids``.
    blacklist: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_phone_set)
    not_disturb: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_phone_set)
    invalid: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_phone_set)
    invalid_error: str = "Número de telefone inválido."
    #: Accept 10-digit national numbers (no mobile "9") as valid (Kolmeya's rule is unknown).
    allow_ten_digits: bool = attrs.field(default=False, converter=_to_bool)
    #: Final status code -> share; drawn with the seeded RNG when a message becomes final.
    outcomes: Dict[int, float] = attrs.field(
        factory=lambda: {3: 0.90, 4: 0.05, 5: 0.03, 6: 0.02}, converter=_to_outcomes
    )
    #: National number -> final status code, overriding the draw.
    forced_outcomes: Dict[str, int] = attrs.field(factory=dict, converter=_to_forced)
    #: Seconds from acceptance to status 2 ("enviado") and to the final status.
    sent_delay: float = attrs.field(default=0.0, converter=to_float, validator=check_non_negative)
    delivery_delay: float = attrs.field(default=0.0, converter=to_float,
                                        validator=check_non_negative)
    #: A background thread runs :meth:`KolmeyaSimulator.advance` every ``tick`` seconds.
    auto_progress: bool = attrs.field(default=False, converter=_to_bool)
    tick: float = attrs.field(default=0.05, converter=to_float, validator=check_positive)
    #: ``"nested"`` (the API docs' transcription, docs/kolmeya.md "Webhooks") or ``"flat"``
    #: (one callback per message).
    callback_shape: str = attrs.field(default="nested", validator=check_one_of("nested", "flat"))
    #: ``"final"`` (only final statuses, as the API docs say) or ``"all"`` (status 2 as well).
    callbacks_on: str = attrs.field(default="final", validator=check_one_of("final", "all"))
    callback_timeout: float = attrs.field(default=5.0, converter=to_float, validator=check_positive)
    #: Attempts per callback on a non-2xx answer or a connection error (Kolmeya's policy: unknown).
    callback_max_attempts: int = attrs.field(default=3, converter=to_int, validator=check_positive)
    #: Seconds before the first retry; doubled for each later one.
    callback_backoff: float = attrs.field(default=0.5, converter=to_float,
                                          validator=check_non_negative)
    callback_drop_rate: float = rate_field()
    callback_duplicate_rate: float = rate_field()
    callback_shuffle: bool = attrs.field(default=False, converter=_to_bool)
    balance: Decimal = attrs.field(default=Decimal("1000"), converter=to_decimal)
    price_per_segment: Decimal = attrs.field(default=Decimal("0.08"), converter=to_decimal)
    #: ``"brl"`` (``"R$9.397,30"``, observed) or ``"plain"`` (``"9397.30"``).
    balance_format: str = attrs.field(default="brl", validator=check_one_of("brl", "plain"))
    #: Refuse (422) a send that costs more than the balance; the real behaviour is unknown.
    enforce_balance: bool = attrs.field(default=False, converter=_to_bool)
    #: Cost centres listed by ``sms/segments``; ``tenant_segment_id`` must be one of them.
    cost_centres: Tuple[Tuple[int, str], ...] = attrs.field(
        default=((1, "Corporativo"),), converter=_to_cost_centres
    )
    replies_per_page: int = attrs.field(default=1000, converter=to_int, validator=check_positive)
    timezone: str = attrs.field(default="America/Sao_Paulo", validator=_known_zone)
    #: Faults. Each rate is a probability per request, drawn with the seeded RNG.
    fail_429_rate: float = rate_field()
    retry_after: int = attrs.field(default=1, converter=to_int, validator=check_non_negative)
    fail_500_rate: float = rate_field()
    #: Send endpoints only: accept the request, then answer 500 anyway.
    error_after_accept_rate: float = rate_field()
    #: Send endpoints only: accept the request, then hold the answer ``hang_seconds``.
    timeout_after_accept_rate: float = rate_field()
    hang_seconds: float = attrs.field(default=30.0, converter=to_float,
                                      validator=check_non_negative)
    #: Delay before every API response.
    slow_seconds: float = attrs.field(default=0.0, converter=to_float,
                                      validator=check_non_negative)
    #: Endpoints the faults apply to (``"sms/store"``...); empty means all of them.
    fault_endpoints: FrozenSet[str] = attrs.field(factory=frozenset, converter=_to_str_set)
    #: Requests allowed per ``rate_window`` seconds (0: no limit). With a limit, every answer
    #: carries ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch seconds, as Laravel
    #: sends them) and a request past it is answered 429 with ``Retry-After``.
    rate_limit: int = attrs.field(default=0, converter=to_int, validator=check_non_negative)
    rate_window: float = attrs.field(default=60.0, converter=to_float, validator=check_positive)
    #: How ``sms/status/request`` answers a lookup by ``{"reference": ...}`` (the form is
    #: documented only second-hand): ``"documented"`` finds the request, ``"404"`` answers
    #: ``{"errors": ["Not found."]}`` with 404 and ``"422"`` a validation error, whether or
    #: not the request exists. A lookup by ``{"id": ...}`` always works.
    reference_lookup: str = attrs.field(default="documented",
                                        validator=check_one_of("documented", "404", "422"))

    def json_value(self, name: str, value: Any) -> Any:
        """As :meth:`SimulatorSettings.json_value`; cost centres as ``[{"id", "name"}]``."""
        if isinstance(value, tuple):
            return [{"id": i, "name": n} for i, n in value]
        return super().json_value(name, value)
