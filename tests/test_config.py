"""Settings from the environment and smskit.toml; secrets never shown."""

from __future__ import annotations

import logging
import os
from decimal import Decimal
from pathlib import Path
from typing import Callable, Dict

import pytest

from smskit import SmsKit
from smskit.config import Secret, Settings, redact
from smskit.errors import ConfigurationError
from smskit.outbox.links import shortener_for
from smskit.webhooks import WebhookPolicy
from smskit_odoo.store import track_sent


def test_defaults_are_the_embedded_ones() -> None:
    s = Settings.load(environ={})
    assert s.database_url == "sqlite:///smskit.db"
    assert s.timezone == "America/Sao_Paulo"
    assert "SAIR" in s.optout_keywords


def test_optout_keywords_are_single_words() -> None:
    """A reply opts out by its first word, so a phrase or a word with punctuation could never
    match: refused when the settings are read, not opt-outs silently lost."""
    s = Settings.load(environ={"SMSKIT_OPTOUT_KEYWORDS": "sair, Páre ,STOP"})
    assert s.optout_keywords == ("SAIR", "PÁRE", "STOP")
    for value in ("SAIR,NÃO QUERO", "SAIR.", "SAIR,pare-de-enviar"):
        with pytest.raises(ConfigurationError, match="optout_keywords: .* not a single word"):
            Settings.load(environ={"SMSKIT_OPTOUT_KEYWORDS": value})


def test_env_overrides_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "smskit.toml"
    cfg.write_text('[smskit]\nprice_per_segment = "0.09"\nprovider = "loopback"\n'
                   '[smskit.kolmeya]\ncost_centre_id = 12\n', encoding="utf-8")
    s = Settings.load(environ={"SMSKIT_PROVIDER": "kolmeya"}, config_file=cfg)
    assert s.provider == "kolmeya"
    assert s.price_per_segment == Decimal("0.09")
    assert s.get("kolmeya_cost_centre_id") == "12"


def test_secrets_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings.load(environ={"SMSKIT_KOLMEYA_TOKEN": "tok-123456",
                               "SMSKIT_WEBHOOK_SECRET": "sec-9",
                               "SMSKIT_DATABASE_URL": "odoo://admin:pw-77@localhost:8069/db"})
    text = repr(s) + str(s.webhook_secret) + repr(s.secret("kolmeya_token"))
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("settings %r", s)
    for secret in ("tok-123456", "sec-9", "pw-77"):
        assert secret not in text
        assert secret not in caplog.text
    assert s.secret("kolmeya_token") == Secret("tok-123456")
    assert s.secret("kolmeya_token").reveal() == "tok-123456"  # type: ignore[union-attr]
    assert redact("Bearer tok-123456 failed", s.secret("kolmeya_token")) == "Bearer ******** failed"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("SMSKIT_PRICE_PER_SEGMENT", "abc", "price_per_segment"),
    ("SMSKIT_MAX_SEGMENTS", "ten", "max_segments"),
    ("SMSKIT_ALLOW_LANDLINES", "maybe", "allow_landlines"),
    ("SMSKIT_HOLIDAYS", "25/12/2026", "holidays"),
    ("SMSKIT_MAX_SEGMENTS", "0", "max_segments: expected a whole number of at least 1"),
    ("SMSKIT_PRICE_PER_SEGMENT", "-0.08", "price_per_segment: expected an amount"),
    ("SMSKIT_PRICE_PER_SEGMENT", "NaN", "price_per_segment: expected an amount"),
])
def test_bad_values_name_the_setting(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(environ={key: value})


@pytest.mark.parametrize(("values", "read", "message"), [
    ({"x": "0"}, lambda s: s.number("x", 1.0, exclusive=True), "x: must be more than 0"),
    ({"x": "-1"}, lambda s: s.number("x", 1.0), "x: must be at least 0"),
    ({"x": "inf"}, lambda s: s.number("x", 1.0), "x: expected a number"),
    ({"x": "2.5"}, lambda s: s.count("x", 1), "x: expected a whole number"),
    ({"x": "0"}, lambda s: s.count("x", 1), "x: must be at least 1"),
    ({"x": "ture"}, lambda s: s.flag("x", True), "x: expected a boolean"),
])
def test_plugin_settings_refuse_what_they_cannot_read(
        values: Dict[str, str], read: Callable[[Settings], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        read(Settings(values=values))


@pytest.mark.parametrize(("key", "read"), [
    ("allow_insecure_webhooks", lambda s: WebhookPolicy.from_settings(s)),
    ("link_tracking", lambda s: shortener_for(s)),
    ("odoo_track_sent", lambda s: track_sent(s)),
])
def test_a_yes_no_setting_with_a_typo_is_refused_not_read_as_no(
        key: str, read: Callable[[Settings], object]) -> None:
    with pytest.raises(ConfigurationError, match=f"{key}: expected a boolean"):
        read(Settings(values={key: "ture"}))


def test_plugin_settings_read_their_defaults_and_values() -> None:
    empty = Settings(values={"x": " "})
    assert (empty.number("x", 2.5), empty.count("x", 3), empty.flag("x", True)) == (2.5, 3, True)
    given = Settings(values={"n": "0.5", "c": "7", "f": "off", "t": "Yes"})
    assert given.number("n", 1.0, exclusive=True) == 0.5
    assert given.count("c", 1) == 7 and isinstance(given.count("c", 1), int)
    assert (given.flag("f", True), given.flag("t", False)) == (False, True)


def test_bad_toml_is_a_configuration_error(tmp_path: Path) -> None:
    cfg = tmp_path / "smskit.toml"
    cfg.write_text("[smskit\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Settings.load(environ={}, config_file=cfg)


# -- settings as keywords: SmsKit(database_url=..., provider=..., kolmeya_token=...) ------------
@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No SMSKIT_* variable and no smskit.toml: a directory of our own."""
    for key in list(os.environ):
        if key.startswith("SMSKIT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_kit_takes_settings_as_keywords(clean_env: Path) -> None:
    kit = SmsKit(database_url="sqlite:///kw.db", provider="loopback", kolmeya_token="tok-1",
                 max_segments=3, allow_landlines=True, kolmeya_timeout=7)
    assert kit.settings.database_url == "sqlite:///kw.db"
    assert kit.settings.provider == "loopback"
    assert kit.settings.max_segments == 3 and kit.settings.allow_landlines is True
    assert kit.settings.get("kolmeya_token") == "tok-1"
    assert kit.settings.get("kolmeya_timeout") == "7"  # a plugin reads text, as from SMSKIT_*
    assert "tok-1" not in repr(kit.settings)
    assert kit.provider().name == "loopback"
    assert not (clean_env / "kw.db").exists()  # the constructor opens nothing


def test_keywords_win_over_environment_over_toml_over_defaults(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "smskit.toml").write_text(
        '[smskit]\nprovider = "from-toml"\ntimezone = "America/Recife"\n'
        'database_url = "sqlite:///toml.db"\nmax_segments = 4\n', encoding="utf-8")
    monkeypatch.setenv("SMSKIT_PROVIDER", "from-env")
    monkeypatch.setenv("SMSKIT_DATABASE_URL", "sqlite:///env.db")
    kit = SmsKit(provider="loopback")
    assert kit.settings.provider == "loopback"                   # keyword
    assert kit.settings.database_url == "sqlite:///env.db"       # environment over toml
    assert kit.settings.timezone == "America/Recife"             # toml over the default
    assert kit.settings.default_region == "BR"                   # the default
    assert SmsKit().settings.provider == "from-env"              # SmsKit() reads them too
    assert SmsKit.from_env().settings.max_segments == 4
    assert SmsKit.from_env(provider="loopback").settings.provider == "loopback"


def test_a_settings_value_is_used_as_given(clean_env: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSKIT_PROVIDER", "from-env")
    given = Settings(provider="loopback")
    assert SmsKit(given).settings is given
    with pytest.raises(ConfigurationError, match="not both"):
        SmsKit(given, database_url="sqlite:///x.db")
    with pytest.raises(ConfigurationError, match="values="):
        Settings.load(environ={}, values={"a": "b"})


def test_a_provider_object_still_wins(clean_env: Path) -> None:
    from smskit.providers.loopback import LoopbackProvider

    provider = LoopbackProvider()
    kit = SmsKit(provider=provider, database_url="memory://")
    assert kit.provider() is provider
