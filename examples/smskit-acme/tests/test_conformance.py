"""AcmeProvider passes smskit's provider conformance suite against the fake Acme."""

from __future__ import annotations

import contextlib
import socket
from typing import Iterator, Mapping, Tuple

import pytest
from fake_acme import FakeAcme
from smskit_acme.provider import AcmeProvider

from smskit.models import Message, SendResult
from smskit.testing.conformance import ProviderConformance

REFUSED = "+5511900000001"


class TestAcmeConformance(ProviderConformance[AcmeProvider]):
    """Every check of the suite: sending, the error contract, reconciliation, webhooks."""

    @pytest.fixture
    def provider(self, acme: FakeAcme, acme_provider: AcmeProvider) -> AcmeProvider:
        self.acme = acme  # the simulations below drive this fake
        acme.refused.add(REFUSED)
        return acme_provider

    @pytest.fixture
    def refused_phone(self) -> str:
        return REFUSED

    @contextlib.contextmanager
    def gateway_unreachable(self, provider: AcmeProvider) -> Iterator[None]:
        """Point the provider at a port nobody listens on: the connection is refused."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        reachable, provider.base_url = provider.base_url, closed
        try:
            yield
        finally:
            provider.base_url = reachable

    @contextlib.contextmanager
    def timeout_after_accept(self, provider: AcmeProvider) -> Iterator[None]:
        """Acme stores the batch, then answers after the provider's timeout."""
        with self.acme.hanging_after_accept():
            yield

    def status_callback(self, provider: AcmeProvider, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        """The signed form Acme posts when the message is delivered."""
        return self.acme.status_callback(url, str(result.provider_message_id))
