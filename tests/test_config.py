"""Settings from the environment and smskit.toml; secrets never shown."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from smskit.config import Secret, Settings, redact
from smskit.errors import ConfigurationError


def test_defaults_are_the_embedded_ones() -> None:
    s = Settings.load(environ={})
    assert s.database_url == "sqlite:///smskit.db"
    assert s.timezone == "America/Sao_Paulo"
    assert "SAIR" in s.optout_keywords


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
])
def test_bad_values_name_the_setting(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.load(environ={key: value})


def test_bad_toml_is_a_configuration_error(tmp_path: Path) -> None:
    cfg = tmp_path / "smskit.toml"
    cfg.write_text("[smskit\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Settings.load(environ={}, config_file=cfg)
