"""TwilioProvider passes the provider conformance suite against the simulator under uvicorn,
sending from a number and through a Messaging Service."""

from __future__ import annotations

from typing import Iterator

import pytest

from smskit.testing.conformance import ProviderConformance
from smskit_twilio.provider import TwilioProvider
from smskit_twilio.testing.simulator import DEFAULT_SERVICE_SID
from twilio_helpers import SimServer, twilio_settings

REFUSED = "+5511999990000"  # replied STOP before: Twilio answers 21610


class TestTwilioProvider(ProviderConformance):
    """The shared suite, over HTTP, sending from the account's number."""

    @pytest.fixture
    def provider(self, twilio_sim: SimServer) -> Iterator[TwilioProvider]:
        sim, base = twilio_sim
        provider = TwilioProvider.from_settings(twilio_settings(sim, base))
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self, twilio_sim: SimServer) -> str:
        sim, _ = twilio_sim
        sim.configure(opted_out=[REFUSED])
        return REFUSED


class TestTwilioProviderWithMessagingService(TestTwilioProvider):
    """The same suite, sending through a Messaging Service (messages start ``accepted``)."""

    @pytest.fixture
    def provider(self, twilio_sim: SimServer) -> Iterator[TwilioProvider]:
        sim, base = twilio_sim
        settings = twilio_settings(sim, base, twilio_from="",
                                   twilio_messaging_service_sid=DEFAULT_SERVICE_SID)
        provider = TwilioProvider.from_settings(settings)
        yield provider
        provider.close()
