"""Opt-out keywords and quiet hours."""

from __future__ import annotations

import datetime as dt
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smskit.errors import ConfigurationError
from smskit.policy import QuietHours, is_optout
from smskit.timeutil import zone

SP = zone("America/Sao_Paulo")


@pytest.mark.parametrize("text", ["SAIR", "sair", " Sair. ", "PARAR", "parar por favor", "Stop!",
                                  "cancelar", "CANCELÁR"])
def test_optout_keywords(text: str) -> None:
    assert is_optout(text) is not None


@pytest.mark.parametrize("text", ["vou sair mais cedo hoje", "ok obrigado", "", "quero saber"])
def test_ordinary_replies_are_not_optouts(text: str) -> None:
    assert is_optout(text) is None


def test_custom_keywords() -> None:
    assert is_optout("remover", ["REMOVER"]) == "REMOVER"
    assert is_optout("sair", ["REMOVER"]) is None


def local(y: int, m: int, d: int, h: int, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=SP)


def test_window_across_midnight_defers_to_its_end() -> None:
    q = QuietHours.parse("21:00-08:00")
    assert q.next_allowed(local(2026, 11, 26, 12)) is None
    assert q.next_allowed(local(2026, 11, 26, 22, 30)) == local(2026, 11, 27, 8)
    assert q.next_allowed(local(2026, 11, 27, 3)) == local(2026, 11, 27, 8)
    assert q.next_allowed(local(2026, 11, 27, 8)) is None


def test_quiet_days_and_holidays_skip_whole_days() -> None:
    # 2026-11-29 is a Sunday; 2026-11-30 declared a holiday.
    q = QuietHours.parse("21:00-08:00", days=["dom"], holidays=[dt.date(2026, 11, 30)])
    assert q.next_allowed(local(2026, 11, 28, 22)) == local(2026, 12, 1, 8)


def test_next_allowed_is_utc() -> None:
    q = QuietHours.parse("21:00-08:00")
    result = q.next_allowed(dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.timezone.utc))  # 22:00 SP
    assert result == dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.timezone.utc)
    assert result is not None and result.tzinfo == dt.timezone.utc


def test_disabled_quiet_hours_never_defer() -> None:
    assert QuietHours().next_allowed(local(2026, 11, 26, 23)) is None


@pytest.mark.parametrize("window", ["21-08", "25:00-08:00", "nope"])
def test_bad_window_is_a_configuration_error(window: str) -> None:
    with pytest.raises(ConfigurationError, match="quiet hours"):
        QuietHours.parse(window)


def test_every_day_quiet_is_reported() -> None:
    q = QuietHours.parse(None, days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    with pytest.raises(ConfigurationError, match="no allowed time"):
        q.next_allowed(local(2026, 11, 26, 12))


NY = zone("America/New_York")


def test_a_window_ending_in_the_repeated_hour_never_ends_before_the_moment_asked() -> None:
    # 2027-11-07, New York: 01:00-01:59 happens twice (EDT, then EST).
    q = QuietHours.parse("23:00-01:30", tz="America/New_York")
    first_pass = dt.datetime(2027, 11, 7, 5, 10, tzinfo=dt.timezone.utc)   # 01:10 EDT
    second_pass = dt.datetime(2027, 11, 7, 6, 10, tzinfo=dt.timezone.utc)  # 01:10 EST
    assert q.next_allowed(first_pass) == dt.datetime(2027, 11, 7, 5, 30, tzinfo=dt.timezone.utc)
    assert q.next_allowed(second_pass) == dt.datetime(2027, 11, 7, 6, 30, tzinfo=dt.timezone.utc)


def test_a_quiet_day_ending_at_a_midnight_that_does_not_exist_resumes_at_the_real_time() -> None:
    # 2018-11-04, São Paulo: clocks jumped from 00:00 to 01:00; Saturday was quiet, and so is
    # 01:00-02:00: the real first moment of Sunday (01:00) is inside it.
    q = QuietHours.parse("01:00-02:00", days=["sat"])
    saturday = dt.datetime(2018, 11, 3, 15, 0, tzinfo=dt.timezone.utc)
    assert q.next_allowed(saturday) == dt.datetime(2018, 11, 4, 4, 0, tzinfo=dt.timezone.utc)


# -- next_allowed around daylight-saving changes (property) -------------------------------------
DST_ZONES = ("America/New_York", "America/Sao_Paulo", "Europe/London", "Australia/Lord_Howe",
             "America/Havana", "America/Santiago", "Asia/Tehran", "Pacific/Apia")
UTC = dt.timezone.utc


def _transitions(name: str) -> List[dt.datetime]:
    """The moments (UTC, to the minute) the zone's offset changed, 2010 to 2027."""
    tz = zone(name)
    found: List[dt.datetime] = []
    moment = dt.datetime(2010, 1, 1, tzinfo=UTC)
    step = dt.timedelta(hours=6)
    while moment.year < 2028:
        later = moment + step
        if moment.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset():
            low, high = moment, later
            while high - low > dt.timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    break
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        moment = later
    return found


TRANSITIONS = {name: _transitions(name) for name in DST_ZONES}


@st.composite
def around_a_change(draw: st.DrawFn) -> Tuple[QuietHours, dt.datetime]:
    """Quiet hours in a zone with DST, and a moment within a day of one of its changes; the
    window's end is near the change's wall time, so it often falls in a gap or a repeat."""
    name = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(TRANSITIONS[name]))
    when = change + dt.timedelta(minutes=draw(st.integers(-26 * 60, 26 * 60)))
    wall = change.astimezone(zone(name))
    end = (wall + dt.timedelta(minutes=draw(st.integers(-150, 150)))).time()
    start = dt.time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45])))
    window = draw(st.one_of(st.none(), st.just(f"{start:%H:%M}-{end:%H:%M}")))
    days = draw(st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                         max_size=3))
    holidays = draw(st.lists(st.integers(-2, 2), max_size=2))
    return QuietHours.parse(window, days=days, tz=name, holidays=[
        when.astimezone(zone(name)).date() + dt.timedelta(days=d) for d in holidays]), when


@settings(max_examples=400, deadline=None)
@given(around_a_change())
def test_next_allowed_is_never_earlier_than_asked_and_is_itself_allowed(
        case: Tuple[QuietHours, dt.datetime]) -> None:
    quiet, when = case
    found = quiet.next_allowed(when)
    if found is not None:
        assert found >= when and found.tzinfo == UTC
        assert quiet.next_allowed(found) is None
