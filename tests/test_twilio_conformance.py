"""TwilioProvider passes the provider conformance suite against the simulator under uvicorn,
sending from a number and through a Messaging Service."""

from __future__ import annotations

import contextlib
import socket
from typing import Iterator, Mapping, Tuple
from urllib.parse import urlencode

import pytest

from smskit.models import Message, SendResult
from smskit.testing.conformance import ProviderConformance
from smskit_twilio.provider import TwilioProvider
from smskit_twilio.signature import SIGNATURE_HEADER, compute_signature
from smskit_twilio.testing.simulator import DEFAULT_SERVICE_SID
from twilio_helpers import SimServer, twilio_settings

REFUSED = "+5511999990000"  # replied STOP before: Twilio answers 21610


class TestTwilioProvider(ProviderConformance[TwilioProvider]):
    """The shared suite, over HTTP, sending from the account's number."""

    @pytest.fixture
    def provider(self, twilio_sim: SimServer) -> Iterator[TwilioProvider]:
        sim, base = twilio_sim
        self.sim = sim
        # One attempt (an unreachable gateway fails at once), a short read timeout (for the
        # create the simulator accepts and then holds).
        provider = TwilioProvider.from_settings(twilio_settings(
            sim, base, twilio_max_attempts=1, twilio_timeout=1))
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self, twilio_sim: SimServer) -> str:
        sim, _ = twilio_sim
        sim.configure(opted_out=[REFUSED])
        return REFUSED

    @contextlib.contextmanager
    def gateway_unreachable(self, provider: TwilioProvider) -> Iterator[None]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
        reachable, provider.client.base_url = provider.client.base_url, closed
        try:
            yield
        finally:
            provider.client.base_url = reachable

    @contextlib.contextmanager
    def timeout_after_accept(self, provider: TwilioProvider) -> Iterator[None]:
        self.sim.configure(timeout_after_accept_rate=1.0, hang_seconds=5)
        try:
            yield
        finally:
            self.sim.configure(timeout_after_accept_rate=0.0)

    def status_callback(self, provider: TwilioProvider, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        fields = [("MessageSid", str(result.provider_message_id)), ("MessageStatus", "delivered"),
                  ("AccountSid", self.sim.config.account_sid), ("To", message.phone)]
        signature = compute_signature(self.sim.config.auth_token, url, fields)
        return ({"Content-Type": "application/x-www-form-urlencoded",
                 SIGNATURE_HEADER: signature}, urlencode(fields).encode())


class TestTwilioProviderWithMessagingService(TestTwilioProvider):
    """The same suite, sending through a Messaging Service (messages start ``accepted``)."""

    @pytest.fixture
    def provider(self, twilio_sim: SimServer) -> Iterator[TwilioProvider]:
        sim, base = twilio_sim
        self.sim = sim
        settings = twilio_settings(sim, base, twilio_from="", twilio_max_attempts=1,
                                   twilio_timeout=1,
                                   twilio_messaging_service_sid=DEFAULT_SERVICE_SID)
        provider = TwilioProvider.from_settings(settings)
        yield provider
        provider.close()
