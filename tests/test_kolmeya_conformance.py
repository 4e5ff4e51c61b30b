"""KolmeyaProvider passes the provider conformance suite against the simulator under uvicorn."""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest

from smskit.config import Settings
from smskit.testing.conformance import ProviderConformance
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

REFUSED = "+5511999990000"  # on the simulator's blacklist


class TestKolmeyaProvider(ProviderConformance):
    """The shared suite, run over HTTP against a simulated Kolmeya."""

    @pytest.fixture
    def provider(self, kolmeya_sim: Tuple[KolmeyaSimulator, str]) -> Iterator[KolmeyaProvider]:
        simulator, base = kolmeya_sim
        settings = Settings.load(environ={}, provider="kolmeya",
                                 kolmeya_base_url=f"{base}/api/v1",
                                 kolmeya_token=simulator.config.token)
        provider = KolmeyaProvider.from_settings(settings)
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self, kolmeya_sim: Tuple[KolmeyaSimulator, str]) -> str:
        simulator, _ = kolmeya_sim
        simulator.blacklist_add(["11999990000"])
        return REFUSED
