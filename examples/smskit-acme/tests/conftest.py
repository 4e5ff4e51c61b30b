"""Fixtures: a fake Acme on 127.0.0.1, and a provider pointed at it."""

from __future__ import annotations

from typing import Iterator

import pytest
from fake_acme import API_KEY, WEBHOOK_KEY, FakeAcme
from smskit_acme.provider import AcmeProvider

from smskit.config import Secret


@pytest.fixture
def acme() -> Iterator[FakeAcme]:
    """A running fake Acme."""
    with FakeAcme() as fake:
        yield fake


@pytest.fixture
def acme_provider(acme: FakeAcme) -> Iterator[AcmeProvider]:
    """An AcmeProvider on the fake, with a short timeout (a held answer fails fast)."""
    provider = AcmeProvider(Secret(API_KEY), base_url=acme.url,
                            webhook_key=Secret(WEBHOOK_KEY), timeout=0.5)
    yield provider
    provider.close()
