"""KolmeyaProvider passes the provider conformance suite against the simulator under uvicorn."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Iterator, Mapping, Tuple

import pytest

from smskit.config import Settings
from smskit.models import Message, SendResult
from smskit.testing.conformance import ProviderConformance
from smskit_kolmeya.provider import KolmeyaProvider
from smskit_kolmeya.testing.simulator import KolmeyaSimulator

REFUSED = "+5511999990000"  # on the simulator's blacklist


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestKolmeyaProvider(ProviderConformance[KolmeyaProvider]):
    """The shared suite, run over HTTP against a simulated Kolmeya."""

    @pytest.fixture
    def provider(self, kolmeya_sim: Tuple[KolmeyaSimulator, str]) -> Iterator[KolmeyaProvider]:
        simulator, base = kolmeya_sim
        self.simulator = simulator
        # One attempt: an unreachable gateway fails at once instead of backing off; a short
        # read timeout for the request the simulator accepts and then holds.
        settings = Settings.load(environ={}, provider="kolmeya",
                                 kolmeya_base_url=f"{base}/api/v1",
                                 kolmeya_token=simulator.config.token,
                                 kolmeya_max_attempts="1", kolmeya_timeout="1")
        provider = KolmeyaProvider.from_settings(settings)
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self, kolmeya_sim: Tuple[KolmeyaSimulator, str]) -> str:
        simulator, _ = kolmeya_sim
        simulator.blacklist_add(["11999990000"])
        return REFUSED

    @contextlib.contextmanager
    def gateway_unreachable(self, provider: KolmeyaProvider) -> Iterator[None]:
        reachable = provider.client.base_url
        provider.client.base_url = f"http://127.0.0.1:{_closed_port()}/api/v1"
        try:
            yield
        finally:
            provider.client.base_url = reachable

    @contextlib.contextmanager
    def timeout_after_accept(self, provider: KolmeyaProvider) -> Iterator[None]:
        self.simulator.configure(timeout_after_accept_rate=1.0, hang_seconds=5,
                                 fault_endpoints=["sms/store"])
        try:
            yield
        finally:
            self.simulator.configure(timeout_after_accept_rate=0.0)

    def status_callback(self, provider: KolmeyaProvider, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        # The shape Kolmeya's API documentation gives: the request, its messages' statuses.
        body = {"id": result.provider_request_id, "reference": "batch",
                "messages": [{"id": result.provider_message_id, "reference": message.id,
                              "status_code": 3, "status": "entregue"}]}
        return {"content-type": "application/json"}, json.dumps(body).encode()
