"""One-shot and recurring schedules, and :func:`run_due`, which materialises each due
occurrence exactly once.

A schedule is a :class:`SendRequest` (template, recipients or an audience, variables, tags)
plus either a moment (``at``) or an RFC 5545 recurrence rule
(``"FREQ=DAILY;BYHOUR=9;BYMINUTE=0"``) evaluated on the wall clock of the schedule's time zone
(default ``America/Sao_Paulo``)::

    from smskit.outreach.scheduler import add_schedule, run_due

    add_schedule(kit, "lembrete-boleto", {"text": "Olá {{ nome }}, seu boleto vence hoje.",
                                          "recipients": [{"phone": "11987654321", "nome": "Ana"}]},
                 rrule="FREQ=MONTHLY;BYMONTHDAY=10;BYHOUR=9;BYMINUTE=0")
    run_due(kit)            # what `smskit worker`, an Odoo cron or a task queue calls

Instead of a fixed list of recipients, a request may name an **audience**, the JSON data a
campaign takes (:mod:`smskit.outreach.audience`: ``{"type": "tags", "tags": ["vip"]}``, or the
``smskit_odoo`` plugin's ``{"type": "odoo", "domain": [...]}``): it is read afresh, page by page,
at every occurrence, so a weekly send to a tag reaches whoever has the tag that week.

Exactly once, even with several workers and crashes: an occurrence ``T`` is first materialised
as ``outgoing`` messages whose idempotency keys are ``schedule:<id>:<T>:<phone>`` (the store
refuses a second message with the same key), and only then is the schedule advanced with a
compare-and-set from ``T`` to the next occurrence. A worker that crashes in between
re-materialises ``T`` on its next run and every key is already taken; of two workers racing,
both write the same keys (one message each) and the compare-and-set picks the one that counts
the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import attrs
from dateutil import rrule as _rrule

from smskit.errors import (
    ConfigurationError,
    MissingVariableError,
    NotFoundError,
    TemplateError,
    ValidationError,
)
from smskit.ids import new_id
from smskit.kit import BulkSummary, SmsKit
from smskit.outreach import audience as audience_mod
from smskit.outreach.fit import check_fit, hook_variables
from smskit.store.base import Schedule
from smskit.template import Template
from smskit.timeutil import DEFAULT_TZ, zone

__all__ = [
    "AUDIENCE_PAGE",
    "CATCH_UP_POLICIES",
    "ScheduleRun",
    "SendRequest",
    "add_schedule",
    "next_occurrence",
    "run_due",
    "run_now",
    "schedule_tag",
    "upcoming",
]

log = logging.getLogger(__name__)

#: Recipients read from a schedule's audience per page (each page is one ``send_many``).
AUDIENCE_PAGE = 1000
#: ``"latest"``: after downtime, send only the most recent missed occurrence (the default);
#: ``"all"``: send every missed occurrence, oldest first.
CATCH_UP_POLICIES = ("latest", "all")

_UTC = dt.timezone.utc
# Occurrences are computed on naive wall-clock times of the schedule's zone. A wall time and the
# moment it localises to differ from the zone's current reading by at most a DST shift (never
# more than two hours anywhere), so three hours of slack around a search window is enough.
_SLACK = dt.timedelta(hours=3)
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)
_UNTIL_DATE = re.compile(r"(?:^|;)\s*UNTIL\s*=\s*(\d{8})\s*(?:;|$)", re.IGNORECASE)
# Frequencies whose occurrences take their time of day from BYHOUR/BYMINUTE/BYSECOND (or from
# dtstart's), as opposed to rules repeating within the day.
_DAILY_OR_LONGER = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_TIME_OF_DAY = (("BYHOUR", "hour"), ("BYMINUTE", "minute"), ("BYSECOND", "second"))


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"schedule request: {what} must be a non-empty string, "
                              f"got {value!r}")
    return value


def _recipients(value: object) -> Tuple[Union[str, Dict[str, Any]], ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValidationError(f"schedule request: recipients must be a list, got {value!r}")
    out: List[Union[str, Dict[str, Any]]] = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            if item.get("phone") in (None, ""):
                raise ValidationError(f"schedule request: recipient #{index} has no 'phone'")
            out.append({str(k): v for k, v in item.items()})
        elif isinstance(item, (str, int)) and not isinstance(item, bool):
            out.append(str(item))
        else:
            raise ValidationError(f"schedule request: recipient #{index} must be a phone or "
                                  f"a mapping with 'phone', got {item!r}")
    return tuple(out)


def _variables(value: object) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"schedule request: variables must be a mapping, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _tags(value: object) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(f"schedule request: tags must be a list of strings, got {value!r}")
    for tag in value:
        if not isinstance(tag, str) or not tag:
            raise ValidationError(f"schedule request: tag {tag!r} is not a non-empty string")
    return tuple(value)


def _optional_text(value: object) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(f"schedule request: expected a non-empty string or null, "
                              f"got {value!r}")
    return value


def _audience(value: object) -> Optional[Dict[str, Any]]:
    """Audience data (checked by its source when the schedule is created and at each run)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
        raise ValidationError(f"schedule request: audience must be a mapping with a 'type' "
                              f"(as a campaign's), got {value!r}")
    return {str(k): v for k, v in value.items()}


def _template(value: object) -> str:
    text = _text(value, "text")
    Template(text)  # a template that cannot be parsed is refused now, not at run time
    return text


@attrs.frozen(kw_only=True)
class SendRequest:
    """What a schedule sends: the JSON-able ``Schedule.request``.

    ``text`` is a template; each recipient is a phone or a mapping with ``phone`` and
    per-recipient variables; ``variables`` are shared by every recipient. Instead of
    ``recipients``, ``audience`` names who to reach as a campaign does (JSON data read by an
    audience source at every occurrence); exactly one of the two is given. Construction
    validates the shape and parses the template (:class:`~smskit.errors.ValidationError`
    otherwise).
    """

    text: str = attrs.field(converter=_template)
    recipients: Tuple[Union[str, Dict[str, Any]], ...] = attrs.field(default=(),
                                                                     converter=_recipients)
    variables: Dict[str, Any] = attrs.field(factory=dict, converter=_variables)
    tags: Tuple[str, ...] = attrs.field(default=(), converter=_tags)
    campaign_id: Optional[str] = attrs.field(default=None, converter=_optional_text)
    provider: Optional[str] = attrs.field(default=None, converter=_optional_text)
    audience: Optional[Dict[str, Any]] = attrs.field(default=None, converter=_audience)

    def __attrs_post_init__(self) -> None:
        if self.audience is not None and self.recipients:
            raise ValidationError("schedule request: give recipients or an audience, not both")
        if self.audience is None and not self.recipients:
            raise ValidationError("schedule request: recipients is empty")
        try:
            json.dumps(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"schedule request is not JSON-serialisable: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SendRequest:
        """Build (and validate) a request from its stored form; unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"schedule request must be a mapping, got {data!r}")
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"schedule request: unknown key(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(sorted(known))})")
        if "text" not in data or ("recipients" not in data and "audience" not in data):
            raise ValidationError("schedule request needs 'text' and 'recipients' (or an "
                                  "'audience')")
        return cls(**dict(data))

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-able form stored in ``Schedule.request``."""
        out: Dict[str, Any] = {
            "text": self.text,
            "recipients": [dict(r) if isinstance(r, dict) else r for r in self.recipients],
            "variables": dict(self.variables),
            "tags": list(self.tags),
            "campaign_id": self.campaign_id,
        }
        if self.provider is not None:
            out["provider"] = self.provider
        if self.audience is not None:
            out["audience"] = dict(self.audience)
        return out


@attrs.frozen(kw_only=True)
class ScheduleRun:
    """What :func:`run_due` did for one occurrence of one schedule.

    ``won`` is ``True`` for the one caller whose compare-and-set advanced the schedule (the
    run that counts); ``created`` counts messages this call stored (0 when another worker or an
    earlier crashed attempt had stored them: ``duplicates``). ``skipped`` counts older missed
    occurrences left out by the ``"latest"`` catch-up policy. ``error`` is set when the
    occurrence could not be materialised (the schedule is then not advanced and is retried).
    """

    schedule_id: str
    name: str
    occurrence: dt.datetime
    won: bool
    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    canceled: int = 0
    deferred: int = 0
    skipped: int = 0
    next_run_at: Optional[dt.datetime] = None
    error: Optional[str] = None


def schedule_tag(schedule_id: str) -> str:
    """The tag every message of a schedule carries (``"schedule:<id>"``)."""
    return f"schedule:{schedule_id}"


# -- time -----------------------------------------------------------------------------------
def _tz(name: str) -> dt.tzinfo:
    if not isinstance(name, str) or not name:
        raise ValidationError(f"time zone must be an IANA name, got {name!r}")
    try:
        return zone(name)
    except ConfigurationError as exc:
        raise ValidationError(f"unknown time zone {name!r}") from exc


def _aware_utc(value: dt.datetime, what: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{what}: expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{what}: naive datetime {value!r}; pass a timezone-aware one")
    return value.astimezone(_UTC)


def _local_naive(value: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The wall-clock time of an aware ``value`` in ``tz``, without tzinfo."""
    return value.astimezone(tz).replace(tzinfo=None)


def _localise(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """A wall-clock time in ``tz`` as UTC. A time that occurs twice (clocks going back) is
    the first of the two; one that does not exist (clocks going forward) is read with the
    offset before the change, i.e. it lands as far after the change as it was meant to be."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(_UTC)


def _as_local(value: dt.datetime, tz: dt.tzinfo, what: str) -> dt.datetime:
    """``value`` as UTC; a naive one is wall-clock time in ``tz``."""
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{what}: expected a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        return _localise(value.replace(tzinfo=None), tz)
    return value.astimezone(_UTC)


# -- rules ----------------------------------------------------------------------------------
def _normalise_rule(text: str, tz: dt.tzinfo) -> str:
    """One ``RRULE`` line without the ``RRULE:`` prefix; a UTC ``UNTIL`` becomes wall time."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(f"rrule must be a non-empty string, got {text!r}")
    rule = text.strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[len("RRULE:"):].strip()
    if "\n" in rule or "\r" in rule or "DTSTART" in rule.upper():
        raise ValidationError(
            f"rrule {text!r}: give a single RRULE line (e.g. 'FREQ=DAILY;BYHOUR=9;BYMINUTE=0'); "
            "pass the start as dtstart="
        )

    def to_wall(match: re.Match[str]) -> str:
        moment = dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=_UTC)
        return "UNTIL=" + _local_naive(moment, tz).strftime("%Y%m%dT%H%M%S")

    return _UNTIL_UTC.sub(to_wall, rule)


def _rule_parts(rule: str) -> Dict[str, str]:
    """The ``KEY=value`` parts of one normalised ``RRULE`` line, keys upper-cased."""
    parts = (part.split("=", 1) for part in rule.split(";") if "=" in part)
    return {key.strip().upper(): value.strip().upper() for key, value in parts}


def _skipped_wall(moment: dt.datetime, tz: dt.tzinfo) -> Optional[dt.datetime]:
    """The wall time the clocks jumped over that :func:`_localise` reads as ``moment`` (02:30
    for 03:30 on the night 02:00 becomes 03:00), or ``None`` when there is none."""
    earlier = _local_naive(moment - _SLACK, tz) + _SLACK  # read with the offset before a jump
    if earlier != _local_naive(moment, tz) and _localise(earlier, tz) == moment:
        return earlier
    return None


def _rule_start(rule: str, start: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The wall time a rule runs from: ``start``'s, or the skipped wall time ``start`` was
    given as (see :func:`_keep_skipped_time`) when the rule names its whole time of day, so
    the occurrence of the jump's day is kept (it lands at ``start`` or after, never before)."""
    wall = _local_naive(start, tz)
    skipped = _skipped_wall(start, tz)
    parts = _rule_parts(rule)
    if (skipped is None or skipped.date() != wall.date()
            or parts.get("FREQ") not in _DAILY_OR_LONGER
            or any(key not in parts for key, _ in _TIME_OF_DAY)):
        return wall
    return skipped


def _keep_skipped_time(rule: str, dtstart: dt.datetime, tz: dt.tzinfo, tz_name: str,
                       original: str) -> str:
    """``rule``, naming the time of day of a naive ``dtstart`` the clocks jump over.

    Such a start is stored as the moment it lands on (02:30 on the night 02:00 becomes 03:00
    is 03:30), which no longer tells the wall time it was given as: a rule taking its time of
    day from dtstart would run at 03:30 every day. The BYHOUR/BYMINUTE/BYSECOND it lacks are
    added from the wall time given, so it runs at 03:30 that day and at 02:30 from the next.
    A rule repeating within the day (HOURLY, MINUTELY) would shift its hours, and is refused.
    """
    if dtstart.tzinfo is not None and dtstart.utcoffset() is not None:
        return rule
    wall = dtstart.replace(tzinfo=None, microsecond=0)
    landed = _localise(wall, tz)
    if _local_naive(landed, tz) == wall:
        return rule
    parts = _rule_parts(rule)
    if parts.get("FREQ") not in _DAILY_OR_LONGER:
        raise ValidationError(
            f"dtstart={wall.isoformat()} does not exist in {tz_name} (the clocks jump over "
            f"it); rrule {original!r} repeats within the day, so give a start that exists "
            f"(e.g. {landed.astimezone(tz).replace(tzinfo=None).isoformat()})")
    missing = [f"{key}={getattr(wall, field)}" for key, field in _TIME_OF_DAY
               if key not in parts]
    return ";".join([rule, *missing])


def _check_until(rule: str, original: str) -> None:
    """A date alone as ``UNTIL`` is refused: RFC 5545 wants a date-time with a date-time
    start, and dateutil reads the date as 00:00, silently dropping that day's occurrence
    ("UNTIL=20271231" would not send on 31/12)."""
    match = _UNTIL_DATE.search(rule)
    if match is not None:
        day = match.group(1)
        raise ValidationError(
            f"rrule {original!r}: UNTIL={day} is a date alone, which would end the rule at "
            f"00:00 and leave that day out; give a date and time, e.g. UNTIL={day}T235959 "
            f"to include the whole day")


def _compile(rule: str, start: dt.datetime, original: str) -> _rrule.rrule:
    try:
        compiled = _rrule.rrulestr(rule, dtstart=start, cache=True)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ValidationError(f"invalid rrule {original!r}: {exc}") from exc
    if not isinstance(compiled, _rrule.rrule):
        raise ValidationError(f"invalid rrule {original!r}: expected a single RRULE")
    if compiled._freq == _rrule.SECONDLY:  # dateutil has no public getter for the frequency
        raise ValidationError(f"rrule {original!r}: FREQ=SECONDLY is not supported for SMS")
    return compiled


class _Occurrences:
    """The occurrences of one schedule, as UTC datetimes."""

    def __init__(self, schedule: Schedule) -> None:
        self.tz = zone(schedule.timezone)
        self.at: Optional[dt.datetime] = None
        self.rule: Optional[_rrule.rrule] = None
        if schedule.rrule is None:
            self.at = schedule.dtstart or schedule.next_run_at
        else:
            start = schedule.dtstart or schedule.created_at.replace(second=0, microsecond=0)
            rule = _normalise_rule(schedule.rrule, self.tz)
            self.rule = _compile(rule, _rule_start(rule, start, self.tz), schedule.rrule)

    def after(self, moment: dt.datetime, *, inclusive: bool = False) -> Optional[dt.datetime]:
        """The first occurrence after ``moment`` (or at it, with ``inclusive``)."""
        if self.rule is None:
            if self.at is None:
                return None
            return self.at if self.at > moment or (inclusive and self.at == moment) else None
        best: Optional[dt.datetime] = None
        first_wall: Optional[dt.datetime] = None
        for wall in self.rule.xafter(_local_naive(moment, self.tz) - _SLACK, inc=True):
            # Localising is monotonic except around a gap (clocks going forward), so keep
            # looking a little past the first hit and take the earliest.
            if first_wall is not None and wall > first_wall + _SLACK:
                break
            when = _localise(wall, self.tz)
            if when > moment or (inclusive and when == moment):
                best = when if best is None else min(best, when)
                if first_wall is None:
                    first_wall = wall
        return best

    def between(self, low: dt.datetime, high: dt.datetime) -> List[dt.datetime]:
        """Every occurrence in ``[low, high]``, oldest first."""
        if self.rule is None:
            return [self.at] if self.at is not None and low <= self.at <= high else []
        stop = _local_naive(high, self.tz) + _SLACK
        found = set()
        for wall in self.rule.xafter(_local_naive(low, self.tz) - _SLACK, inc=True):
            if wall > stop:
                break
            when = _localise(wall, self.tz)
            if low <= when <= high:
                found.add(when)
        return sorted(found)


def next_occurrence(schedule: Schedule, after: dt.datetime) -> Optional[dt.datetime]:
    """The first occurrence of ``schedule`` strictly after ``after`` (UTC), or ``None``.

    For a one-shot schedule that is its moment if still ahead; for a recurring one the rule is
    evaluated on the wall clock of ``schedule.timezone``.
    """
    return _Occurrences(schedule).after(_aware_utc(after, "after"))


def upcoming(schedule: Schedule, count: int = 5,
             after: Optional[dt.datetime] = None) -> List[dt.datetime]:
    """The next ``count`` occurrences (UTC) after ``after`` (default: the stored next run,
    included)."""
    occurrences = _Occurrences(schedule)
    out: List[dt.datetime] = []
    if after is None:
        if schedule.next_run_at is None:
            return out
        cursor: Optional[dt.datetime] = occurrences.after(schedule.next_run_at, inclusive=True)
    else:
        cursor = occurrences.after(_aware_utc(after, "after"))
    while cursor is not None and len(out) < count:
        out.append(cursor)
        cursor = occurrences.after(cursor)
    return out


# -- creating ----------------------------------------------------------------------------------
def _sources(kit: SmsKit) -> Dict[str, audience_mod.AudienceSource[Any]]:
    return audience_mod.audience_sources(kit.hooks)


def _prepare_audience(kit: SmsKit, request: SendRequest) -> SendRequest:
    """The request with its audience checked by its source (and as the source stores it);
    the template must fit it, as a campaign's must."""
    if request.audience is None:
        return request
    source = audience_mod.source_for(request.audience, _sources(kit))
    parsed = source.prepare(source.parse(request.audience))
    check_fit(kit, source, parsed, request.text, request.variables, provider=request.provider)
    return attrs.evolve(request, audience=parsed.to_data())


def _check_provider(kit: SmsKit, request: SendRequest) -> None:
    """The provider(s) the request goes through must exist and be configured (its own, or
    with routing every routed one): :class:`~smskit.errors.ConfigurationError` names an
    unknown one and the known ones. Messages stored under a provider no worker can build
    would never be sent."""
    kit.check_providers((request.provider,) if request.provider is not None else None)


def _check_recipients(kit: SmsKit, request: SendRequest) -> None:
    """Every phone must parse now (InvalidPhoneError names the number), not at run time."""
    composer = kit.composer(request.provider)
    for recipient in request.recipients:
        composer.phone(recipient["phone"] if isinstance(recipient, dict) else recipient)


def _check_variables(kit: SmsKit, request: SendRequest) -> None:
    """Every recipient of a fixed list must have a value (its own or a shared one) for each
    variable the template needs without a ``default``: one without would be rejected at every
    occurrence. Variables the ``prepare_message`` hooks add (the Odoo plugin's ``partner``)
    count; they are asked for the first recipient lacking one, as a campaign's fit check does.
    """
    template = Template(request.text)
    if not request.recipients or not template.required:
        return
    lacking: Dict[str, List[str]] = {}
    first: Optional[Tuple[str, Dict[str, Any]]] = None
    for recipient in request.recipients:
        context = dict(request.variables)
        if isinstance(recipient, dict):
            context.update(recipient)
        label = str(context["phone"] if isinstance(recipient, dict) else recipient)
        try:
            template.render(context, recipient=label)
        except MissingVariableError as exc:
            lacking.setdefault(exc.variable.split(".", 1)[0], []).append(label)
            first = first or (label, context)
        except TemplateError:
            continue  # a value the template cannot read: that message's own rejection
    if first is not None and kit.hooks.prepare_message.get_hookimpls():
        label, context = first
        for name in hook_variables(kit, context, label, provider=request.provider):
            lacking.pop(name, None)
    for name, labels in lacking.items():
        who = labels[0] + (f" (and {len(labels) - 1} more)" if len(labels) > 1 else "")
        raise ValidationError(
            f"the template needs {name!r} but recipient {who} has no value for it: give it "
            f"to each recipient, as a shared variable ('variables', or --var {name}=...), or "
            f'a default in the template ({{{{ {name} | default("...") }}}})')


def add_schedule(
    kit: SmsKit,
    name: str,
    request: Union[SendRequest, Mapping[str, Any]],
    *,
    at: Optional[dt.datetime] = None,
    rrule: Optional[str] = None,
    tz: str = DEFAULT_TZ,
    dtstart: Optional[dt.datetime] = None,
) -> Schedule:
    """Store a schedule that sends ``request`` once ``at`` a moment, or by an RFC 5545 ``rrule``.

    A naive ``at``/``dtstart`` is wall-clock time in ``tz``. ``rrule`` may carry the
    ``RRULE:`` prefix; it is evaluated on the wall clock of ``tz`` starting at ``dtstart``
    (default: now in ``tz``, to the minute). Everything is checked now: a bad request or phone,
    an invalid rule, an unknown zone, a moment in the past or a rule with no future occurrence
    raise :class:`~smskit.errors.ValidationError`, and a provider that does not exist or
    cannot be built (no token) :class:`~smskit.errors.ConfigurationError`; nothing is stored.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"schedule name must be a non-empty string, got {name!r}")
    if at is not None and rrule is not None:
        raise ValidationError("a schedule takes either at= (one-shot) or rrule= (recurring), "
                              "not both")
    if at is not None and dtstart is not None:
        raise ValidationError("dtstart= only applies to a recurring schedule (rrule=)")
    zone_info = _tz(tz)
    send = request if isinstance(request, SendRequest) else SendRequest.from_dict(request)
    _check_provider(kit, send)
    _check_recipients(kit, send)
    _check_variables(kit, send)
    send = _prepare_audience(kit, send)
    now = _aware_utc(kit.clock(), "kit.clock()")
    this_minute = _localise(_local_naive(now, zone_info).replace(second=0, microsecond=0),
                            zone_info)
    if at is not None:
        start: dt.datetime = _as_local(at, zone_info, "at")
        if start < this_minute:
            raise ValidationError(f"at={at.isoformat()} is in the past (now is "
                                  f"{now.astimezone(zone_info).isoformat()})")
        first: Optional[dt.datetime] = start
        rule_text: Optional[str] = None
    elif rrule is not None:
        start = this_minute if dtstart is None else _as_local(dtstart, zone_info, "dtstart")
        rule_text = _normalise_rule(rrule, zone_info)
        _check_until(rule_text, rrule)
        _compile(rule_text, _local_naive(start, zone_info), rrule)
        if dtstart is not None:
            rule_text = _keep_skipped_time(rule_text, dtstart, zone_info, tz, rrule)
        probe = Schedule(id="probe", name=name, request={}, next_run_at=None, timezone=tz,
                         rrule=rule_text, dtstart=start, created_at=now)
        first = _Occurrences(probe).after(max(start, this_minute), inclusive=True)
        if first is None:
            raise ValidationError(f"rrule {rrule!r} has no occurrence after "
                                  f"{max(start, this_minute).astimezone(zone_info).isoformat()}")
    else:
        raise ValidationError("a schedule needs at= (one-shot) or rrule= (recurring)")
    schedule = Schedule(id=new_id(), name=name.strip(), request=send.to_dict(),
                        next_run_at=first, timezone=tz, rrule=rule_text, dtstart=start,
                        created_at=now)
    return kit.store.add_schedule(schedule)


# -- running -----------------------------------------------------------------------------------
def _materialise(kit: SmsKit, schedule: Schedule, request: SendRequest,
                 occurrence: dt.datetime) -> BulkSummary:
    def send(recipients: Sequence[Union[str, Dict[str, Any]]],
             phone_field: str = "phone") -> BulkSummary:
        return kit.send_many(
            recipients,
            request.text,
            variables=request.variables,
            phone_field=phone_field,
            idempotency_prefix=f"schedule:{schedule.id}:{occurrence.isoformat()}",
            tags=(*request.tags, schedule_tag(schedule.id)),
            campaign_id=request.campaign_id,
            schedule_id=schedule.id,
            provider=request.provider,
            dispatch=False,
        )

    if request.audience is None:
        return send(request.recipients)
    # The audience as it is now, page by page; the occurrence's idempotency keys make a
    # re-run after a crash skip whoever has a message already.
    source = audience_mod.source_for(request.audience, _sources(kit))
    parsed = source.parse(request.audience)
    total = BulkSummary()
    cursor: Optional[str] = None
    while True:
        page = source.read_page(kit, parsed, cursor, AUDIENCE_PAGE)
        if page.recipients:
            _add_summary(total, send(page.recipients, page.phone_field))
        if page.done or page.cursor == cursor:
            return total
        cursor = page.cursor


def _add_summary(total: BulkSummary, part: BulkSummary) -> None:
    for field in attrs.fields(BulkSummary):
        setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))


def _run_schedule(kit: SmsKit, schedule: Schedule, now: dt.datetime,
                  catch_up: str) -> Iterator[ScheduleRun]:
    try:
        occurrences = _Occurrences(schedule)
        request = SendRequest.from_dict(schedule.request)
        # A provider removed from the configuration since: a failed run (reported every cycle,
        # the schedule kept as it is), never messages stored where nothing sends them.
        _check_provider(kit, request)
    except (ValidationError, ConfigurationError) as exc:
        log.error("schedule %s (%s) cannot run: %s", schedule.id, schedule.name, exc)
        if schedule.next_run_at is not None:
            yield ScheduleRun(schedule_id=schedule.id, name=schedule.name,
                              occurrence=schedule.next_run_at, won=False, error=str(exc))
        return
    expected = schedule.next_run_at
    while expected is not None and expected <= now:
        occurrence, skipped = expected, 0
        if catch_up == "latest":
            missed = occurrences.between(expected, now)
            if missed and missed[-1] > expected:
                occurrence, skipped = missed[-1], len(missed) - 1
                log.warning("schedule %s (%s): %d missed occurrence(s) skipped, sending the "
                            "one of %s", schedule.id, schedule.name, skipped,
                            occurrence.isoformat())
        # A failure here is this schedule's alone: it is reported and left as it was (retried
        # next cycle), while the other schedules and the rest of the worker's cycle go on. An
        # audience that cannot be read (no Odoo connection, Odoo down) must not stop the
        # worker or hold up every other send; the occurrence's keys make the retry safe.
        try:
            summary = _materialise(kit, schedule, request, occurrence)
        except (ValidationError, ConfigurationError) as exc:
            log.error("schedule %s (%s) occurrence %s failed: %s", schedule.id, schedule.name,
                      occurrence.isoformat(), exc)
            yield ScheduleRun(schedule_id=schedule.id, name=schedule.name,
                              occurrence=occurrence, won=False, error=str(exc))
            return
        except Exception as exc:  # an audience source or store outage
            log.exception("schedule %s (%s) occurrence %s failed; retrying next cycle",
                          schedule.id, schedule.name, occurrence.isoformat())
            yield ScheduleRun(schedule_id=schedule.id, name=schedule.name,
                              occurrence=occurrence, won=False,
                              error=f"{type(exc).__name__}: {exc}")
            return
        new_next = occurrences.after(occurrence)
        won = kit.store.advance_schedule(schedule.id, expected_next=expected,
                                         new_next=new_next, ran_at=now)
        yield ScheduleRun(
            schedule_id=schedule.id, name=schedule.name, occurrence=occurrence, won=won,
            created=summary.total - summary.duplicates, duplicates=summary.duplicates,
            rejected=summary.rejected, canceled=summary.canceled, deferred=summary.deferred,
            skipped=skipped, next_run_at=new_next,
        )
        if not won:
            return  # another worker owns this schedule's next step
        expected = new_next


def run_due(kit: SmsKit, now: Optional[dt.datetime] = None, *,
            catch_up: str = "latest") -> List[ScheduleRun]:
    """Materialise every due occurrence of every active schedule exactly once.

    Messages are stored ``outgoing`` (not dispatched: the worker's next step sends them),
    tagged ``schedule:<id>``. After downtime, ``catch_up="latest"`` sends only the most recent
    missed occurrence of each schedule (older ones are counted in ``skipped``);
    ``catch_up="all"`` sends each of them, oldest first. Safe to call from several processes
    at once. Returns one :class:`ScheduleRun` per occurrence handled.
    """
    if catch_up not in CATCH_UP_POLICIES:
        raise ValidationError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, "
                              f"got {catch_up!r}")
    moment = _aware_utc(now if now is not None else kit.clock(), "now")
    runs: List[ScheduleRun] = []
    for schedule in kit.store.due_schedules(moment):
        runs.extend(_run_schedule(kit, schedule, moment, catch_up))
    return runs


def run_now(kit: SmsKit, schedule_id: str, now: Optional[dt.datetime] = None) -> ScheduleRun:
    """Send a schedule's request once now, outside its recurrence (a person's "run now"); its
    next run stays as it was. The occurrence is ``now`` to the second, so a second call in the
    same second stores nothing new; the messages are stored ``outgoing`` like those of
    :func:`run_due`. An unknown schedule is a :class:`~smskit.errors.NotFoundError`."""
    schedule = kit.store.get_schedule(schedule_id)
    if schedule is None:
        raise NotFoundError(f"no schedule with id {schedule_id!r}")
    moment = _aware_utc(now if now is not None else kit.clock(), "now").replace(microsecond=0)
    summary = _materialise(kit, schedule, SendRequest.from_dict(schedule.request), moment)
    return ScheduleRun(
        schedule_id=schedule.id, name=schedule.name, occurrence=moment, won=True,
        created=summary.total - summary.duplicates, duplicates=summary.duplicates,
        rejected=summary.rejected, canceled=summary.canceled, deferred=summary.deferred,
        next_run_at=schedule.next_run_at)
