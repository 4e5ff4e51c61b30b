"""Sending policy: blacklist, opt-out keywords and quiet hours.

* The local blacklist (in the store) is authoritative: a blacklisted number is ``canceled``.
* An inbound message whose text is an opt-out keyword (SAIR, PARAR, STOP, CANCELAR... matched
  case- and accent-insensitively on the first word of a short message) puts its sender on the
  blacklist.
* Quiet hours defer a message to the next allowed moment in the installation's time zone
  (default America/Sao_Paulo); a deferred message is never dropped.
* A person's do-not-disturb rule (a daily window, whole days, a "not before" moment; kept on
  their :class:`~smskit.store.outreach.Contact`) defers a message to them to the next moment
  both it and the quiet hours allow (:func:`dnd_next_allowed`), like quiet hours.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import FrozenSet, Iterable, Optional, Sequence

import attrs
from typing_extensions import Protocol

from smskit.config import DEFAULT_OPTOUT_KEYWORDS, Settings
from smskit.errors import ConfigurationError, ValidationError
from smskit.timeutil import DEFAULT_TZ, zone

__all__ = [
    "DndRule",
    "QuietHours",
    "check_dnd",
    "dnd_next_allowed",
    "is_optout",
    "normalize_keyword",
]

_DAY_NAMES = {
    "mon": 0, "seg": 0, "tue": 1, "ter": 1, "wed": 2, "qua": 2, "thu": 3, "qui": 3,
    "fri": 4, "sex": 4, "sat": 5, "sab": 5, "sun": 6, "dom": 6,
}
_WORD = re.compile(r"[A-Z0-9]+")


def normalize_keyword(text: str) -> str:
    """Upper-case ``text`` and strip accents (``"Parár"`` -> ``"PARAR"``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def is_optout(text: str, keywords: Sequence[str] = DEFAULT_OPTOUT_KEYWORDS) -> Optional[str]:
    """The opt-out keyword ``text`` expresses, or ``None``.

    A message opts out when its first word is a keyword and it has at most three words
    ("SAIR", "sair.", "Parar por favor"), so a sentence that merely contains "sair"
    ("vou sair mais cedo hoje") does not.
    """
    words = _WORD.findall(normalize_keyword(text))
    if not words or len(words) > 3:
        return None
    wanted = {normalize_keyword(k) for k in keywords}
    return words[0] if words[0] in wanted else None


def _parse_hhmm(value: str) -> dt.time:
    try:
        hours, minutes = value.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError as exc:
        raise ConfigurationError(f"quiet hours: expected HH:MM, got {value!r}") from exc


def _parse_days(days: Iterable[str]) -> FrozenSet[int]:
    out = set()
    for day in days:
        key = normalize_keyword(day.strip())[:3].lower()
        if key not in _DAY_NAMES:
            raise ConfigurationError(f"quiet days: unknown day {day!r} (use mon..sun or seg..dom)")
        out.add(_DAY_NAMES[key])
    return frozenset(out)


def _at_wall(wall: dt.datetime, tzinfo: dt.tzinfo, not_before: dt.datetime) -> dt.datetime:
    """The naive wall time ``wall`` in ``tzinfo`` as an aware time of that zone, read back
    from UTC (so a time that does not exist becomes the real one after the jump) and never
    before ``not_before``: of a wall time that happens twice, the first unless it is earlier
    than ``not_before``, else the second."""
    utc = dt.timezone.utc
    moment = wall.replace(tzinfo=tzinfo, fold=0).astimezone(utc)
    if moment < not_before.astimezone(utc):
        moment = wall.replace(tzinfo=tzinfo, fold=1).astimezone(utc)
    return moment.astimezone(tzinfo)


@attrs.frozen(kw_only=True)
class QuietHours:
    """When not to send: a daily window (may cross midnight), whole days, and holidays.

    ``QuietHours.parse("21:00-08:00", days=["sun"], holidays=[date(2026, 12, 25)])``.
    """

    start: Optional[dt.time] = None
    end: Optional[dt.time] = None
    days: FrozenSet[int] = frozenset()
    holidays: FrozenSet[dt.date] = frozenset()
    tz: str = DEFAULT_TZ

    @classmethod
    def parse(
        cls,
        window: Optional[str],
        *,
        days: Iterable[str] = (),
        holidays: Iterable[dt.date] = (),
        tz: str = DEFAULT_TZ,
    ) -> QuietHours:
        """Build from ``"HH:MM-HH:MM"`` (or ``None`` for no daily window), day names and dates."""
        start = end = None
        if window:
            left, sep, right = window.partition("-")
            if not sep:
                raise ConfigurationError(f"quiet hours: expected HH:MM-HH:MM, got {window!r}")
            start, end = _parse_hhmm(left), _parse_hhmm(right)
        zone(tz)  # validate early
        return cls(start=start, end=end, days=_parse_days(days), holidays=frozenset(holidays),
                   tz=tz)

    @classmethod
    def from_settings(cls, settings: Settings) -> QuietHours:
        """The installation's quiet hours from ``SMSKIT_QUIET_HOURS``/``_DAYS``/``HOLIDAYS``."""
        return cls.parse(settings.quiet_hours, days=settings.quiet_days,
                         holidays=settings.holidays, tz=settings.timezone)

    @property
    def enabled(self) -> bool:
        """Whether any rule is set."""
        return bool(self.start is not None or self.days or self.holidays)

    def _quiet_day(self, day: dt.date) -> bool:
        return day.weekday() in self.days or day in self.holidays

    def _in_window(self, t: dt.time) -> bool:
        if self.start is None or self.end is None or self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_allowed(self, when: dt.datetime) -> Optional[dt.datetime]:
        """``None`` if sending at ``when`` is allowed; else the next allowed moment (UTC),
        never earlier than ``when``.

        Rules are read on the wall clock of ``tz``. Where the clocks jump, a window ending at a
        time that does not exist ends as far after the jump as it was meant to (an end at 02:30
        on the night 02:00 becomes 03:00 ends at 03:30); one ending in an hour that happens
        twice ends at the first of the two, or at the second when ``when`` is already past the
        first (in the repeated hour's second pass).
        """
        if not self.enabled:
            return None
        tzinfo = zone(self.tz)
        local = when.astimezone(tzinfo)
        moved = False
        for _ in range(400):  # a year of quiet days at most; never loops forever
            if self._quiet_day(local.date()):
                local = _at_wall(dt.datetime.combine(local.date() + dt.timedelta(days=1),
                                                     dt.time(0)), tzinfo, local)
                moved = True
                continue
            if self._in_window(local.timetz().replace(tzinfo=None)):
                end = self.end
                if end is None:  # pragma: no cover - _in_window needs both ends
                    break
                day = local.date()
                if local.time() >= end:
                    day += dt.timedelta(days=1)
                local = _at_wall(dt.datetime.combine(day, end), tzinfo, local)
                moved = True
                continue
            break
        else:
            raise ConfigurationError("quiet hours leave no allowed time in the next 400 days")
        return local.astimezone(dt.timezone.utc) if moved else None



class DndRule(Protocol):
    """Whom a do-not-disturb rule protects, and the rule (a
    :class:`~smskit.store.outreach.Contact` is one)."""

    @property
    def phone(self) -> str:
        """The E.164 number (named in errors)."""

    @property
    def dnd_window(self) -> Optional[str]:
        """A daily window ``"HH:MM-HH:MM"`` (may cross midnight), or ``None``."""

    @property
    def dnd_days(self) -> Sequence[str]:
        """Whole days (``mon``..``sun`` or ``seg``..``dom``)."""

    @property
    def dnd_until(self) -> Optional[dt.datetime]:
        """A moment (aware) before which nothing is sent, or ``None``."""


#: Any moment: a rule that forbids this one forbids every one (no window is a whole day).
_ANY_MOMENT = dt.datetime(2000, 1, 3, tzinfo=dt.timezone.utc)


def check_dnd(window: Optional[str], days: Sequence[str], tz: str) -> QuietHours:
    """The rule as :class:`QuietHours`; a :class:`ValidationError` names a bad window or day,
    or says that the rule leaves no time at all (every day of the week: that is what the
    blacklist is for)."""
    try:
        rule = QuietHours.parse(window or None, days=days, tz=tz)
    except ConfigurationError as exc:
        raise ValidationError(f"do-not-disturb: {exc}") from exc
    try:
        rule.next_allowed(_ANY_MOMENT)
    except ConfigurationError as exc:
        raise ValidationError("do-not-disturb on every day of the week leaves no time to "
                              "send: put the number on the blacklist instead") from exc
    return rule


def dnd_next_allowed(contact: DndRule, when: dt.datetime, *, tz: str,
                     quiet_hours: Optional[QuietHours] = None) -> Optional[dt.datetime]:
    """``None`` if ``contact`` may be messaged at ``when``; else the next moment allowed by
    both their rule and the installation's ``quiet_hours`` (UTC). A
    :class:`ValidationError` when the two together (or the rule alone) leave no time."""
    try:
        rule = check_dnd(contact.dnd_window, contact.dnd_days, tz)
    except ValidationError as exc:  # a rule stored before it was checked, or since broken
        raise ValidationError(f"do-not-disturb of {contact.phone} leaves no time to send: "
                              f"{exc}") from exc
    moment = when
    moved = False
    for _ in range(50):  # each rule only moves forward; a few rounds settle them all
        changed = False
        if contact.dnd_until is not None and moment < contact.dnd_until:
            moment, changed = contact.dnd_until, True
        for quiet in (rule, quiet_hours):
            later = quiet.next_allowed(moment) if quiet is not None else None
            if later is not None:
                moment, changed = later, True
        if not changed:
            break
        moved = True
    else:
        raise ValidationError(f"do-not-disturb of {contact.phone} leaves no time to send")
    return moment if moved else None
