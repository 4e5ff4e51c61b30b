"""The routing settings as data: the route table (``SMSKIT_ROUTES``) and the price tables
(``SMSKIT_<PROVIDER>_PRICES``), parsed once and matched per message without I/O.

Route table: rules separated by ``;`` or new lines, tried in order, the first that matches
wins. A rule is ``<conditions> => <providers>``: every condition (separated by blanks) must
hold, and the providers (comma-separated) are the route, the first one preferred, the others
its failover in order. ``by cost`` after the providers orders them by their price for the
message's destination instead (cheapest first, ties in the order written)::

    tag:otp => twilio, kolmeya
    campaign:promo-* +55 => kolmeya
    +1 => twilio
    BR => kolmeya, twilio
    * => kolmeya, twilio by cost

Conditions: ``+<digits>`` (the E.164 number starts with it: a country code or any longer
prefix), a two-letter ISO region (``BR``, ``PT``: the number's country), ``campaign:<glob>``
(the campaign id, ``*`` and ``?`` as in file names), ``tag:<tag>`` (the message carries the
tag) and ``*`` (anything).

Price table: ``<destination>=<price per segment>`` entries separated by ``,`` or ``;``;
destinations are ``+<digits>`` prefixes (the longest one that matches wins), ISO regions and
``*``. A destination none matches costs the flat ``price_per_segment``::

    SMSKIT_TWILIO_PRICES="+1=0.0079, +55=0.0505, *=0.09"
"""

from __future__ import annotations

import fnmatch
import re
from decimal import Decimal, InvalidOperation
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import attrs

from smskit.errors import ConfigurationError, ValidationError
from smskit.models import Message
from smskit.phone import Phone

__all__ = ["Condition", "PriceTable", "RouteRule", "RouteTable", "region_of"]

_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
_REGION = re.compile(r"^[A-Z]{2}$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_BY_COST = "by cost"


def region_of(phone: str) -> Optional[str]:
    """The ISO region of an E.164 number (``"BR"``), ``None`` when it is not a valid one."""
    try:
        return Phone.parse(phone, allow_landlines=True).region
    except ValidationError:
        return None


@attrs.frozen
class Condition:
    """One condition of a rule: ``kind`` is ``prefix``, ``region``, ``campaign``, ``tag`` or
    ``any``."""

    kind: str
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> Condition:
        """A condition from its text (see the module docs)."""
        if text == "*":
            return cls("any")
        if _PREFIX.match(text):
            return cls("prefix", text)
        if _REGION.match(text):
            return cls("region", text)
        kind, sep, value = text.partition(":")
        if sep and kind in ("campaign", "tag") and value:
            return cls(kind, value)
        raise ConfigurationError(
            f"routes: {text!r} is not a condition (use +<digits>, a region such as BR, "
            "campaign:<glob>, tag:<tag> or *)")

    def matches(self, message: Message) -> bool:
        """Whether ``message`` meets the condition."""
        if self.kind == "any":
            return True
        if self.kind == "prefix":
            return message.phone.startswith(self.value)
        if self.kind == "region":
            return region_of(message.phone) == self.value
        if self.kind == "campaign":
            return message.campaign_id is not None and fnmatch.fnmatchcase(
                message.campaign_id, self.value)
        return self.value in message.tags


@attrs.frozen
class RouteRule:
    """One rule: its conditions, its providers (preferred first) and whether the providers
    are ordered by price instead."""

    conditions: Tuple[Condition, ...]
    providers: Tuple[str, ...]
    by_cost: bool = False

    def matches(self, message: Message) -> bool:
        """Whether every condition holds for ``message``."""
        return all(c.matches(message) for c in self.conditions)


def _split(text: str, separators: str) -> List[str]:
    return [part.strip() for part in re.split(f"[{separators}]", text) if part.strip()]


def _providers(text: str, where: str) -> Tuple[str, ...]:
    names = tuple(dict.fromkeys(_split(text, ",")))
    bad = [n for n in names if not _PROVIDER.match(n)]
    if not names or bad:
        raise ConfigurationError(f"{where}: expected provider names separated by commas, got "
                                 f"{text.strip()!r}")
    return names


@attrs.frozen
class RouteTable:
    """The rules of ``SMSKIT_ROUTES`` in order (empty: no routing)."""

    rules: Tuple[RouteRule, ...] = ()

    @classmethod
    def parse(cls, text: Optional[str]) -> RouteTable:
        """The table written in ``text`` (see the module docs); a malformed rule raises
        :class:`ConfigurationError` naming it."""
        rules: List[RouteRule] = []
        for line in _split(text or "", ";\n"):
            left, sep, right = line.partition("=>")
            if not sep or not left.strip():
                raise ConfigurationError(f"routes: {line!r} is not '<conditions> => "
                                         "<providers>'")
            right = right.strip()
            by_cost = right.lower().endswith(_BY_COST)
            if by_cost:
                right = right[: -len(_BY_COST)]
            conditions = tuple(Condition.parse(part) for part in left.split())
            rules.append(RouteRule(conditions, _providers(right, f"routes: {line!r}"),
                                   by_cost))
        return cls(tuple(rules))

    def match(self, message: Message) -> Optional[RouteRule]:
        """The first rule ``message`` meets, or ``None``."""
        for rule in self.rules:
            if rule.matches(message):
                return rule
        return None

    def providers(self) -> Tuple[str, ...]:
        """Every provider the table names, in the order first named."""
        return tuple(dict.fromkeys(p for rule in self.rules for p in rule.providers))


@attrs.frozen
class PriceTable:
    """One provider's price per segment by destination (see the module docs)."""

    prefixes: Tuple[Tuple[str, Decimal], ...] = ()
    regions: Mapping[str, Decimal] = attrs.field(factory=dict)
    other: Optional[Decimal] = None

    @classmethod
    def parse(cls, text: str, key: str = "prices") -> PriceTable:
        """The table written in ``text``; a malformed entry raises
        :class:`ConfigurationError` naming ``key``."""
        prefixes: List[Tuple[str, Decimal]] = []
        regions: Dict[str, Decimal] = {}
        other: Optional[Decimal] = None
        for entry in _split(text, ",;\n"):
            where, sep, raw = entry.partition("=")
            where = where.strip()
            try:
                price = Decimal(raw.strip())
            except InvalidOperation as exc:
                raise ConfigurationError(f"{key}: {entry!r} is not <destination>=<price>") \
                    from exc
            if not sep or not price.is_finite() or price < 0:
                raise ConfigurationError(f"{key}: {entry!r} is not <destination>=<price>")
            if where == "*":
                other = price
            elif _PREFIX.match(where):
                prefixes.append((where, price))
            elif _REGION.match(where):
                regions[where] = price
            else:
                raise ConfigurationError(f"{key}: {where!r} is not a destination (use "
                                         "+<digits>, a region such as BR, or *)")
        prefixes.sort(key=lambda item: -len(item[0]))  # the longest prefix wins
        return cls(tuple(prefixes), regions, other)

    def price(self, phone: str) -> Optional[Decimal]:
        """The price per segment to ``phone``, ``None`` when no entry covers it."""
        for prefix, price in self.prefixes:
            if phone.startswith(prefix):
                return price
        if self.regions:
            region = region_of(phone)
            if region is not None and region in self.regions:
                return self.regions[region]
        return self.other


def order_by_price(providers: Sequence[str], prices: Mapping[str, Decimal]) -> Tuple[str, ...]:
    """``providers`` cheapest first (ties keep their order)."""
    return tuple(sorted(providers, key=lambda p: prices[p]))
