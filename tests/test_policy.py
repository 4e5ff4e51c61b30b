"""Opt-out keywords and quiet hours."""

from __future__ import annotations

import datetime as dt

import pytest

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
