"""The loopback provider passes the provider conformance suite."""

from __future__ import annotations

import contextlib
import json
from typing import Iterator, Mapping, Optional, Tuple

import pytest

from smskit.errors import AmbiguousSendError, TransientProviderError
from smskit.models import Message, SendResult
from smskit.providers.loopback import LoopbackProvider
from smskit.testing.conformance import ProviderConformance


class TestLoopbackConformance(ProviderConformance[LoopbackProvider]):
    @pytest.fixture
    def provider(self) -> Iterator[LoopbackProvider]:
        provider = LoopbackProvider(max_batch=50)
        provider.refuse("+5511900000001", "invalid")
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self) -> Optional[str]:
        return "+5511900000001"

    @contextlib.contextmanager
    def gateway_unreachable(self, provider: LoopbackProvider) -> Iterator[None]:
        provider.fail_next(TransientProviderError("connection refused"))
        yield

    @contextlib.contextmanager
    def timeout_after_accept(self, provider: LoopbackProvider) -> Iterator[None]:
        provider.fail_next(AmbiguousSendError("read timeout"), after_accept=True)
        yield

    def status_callback(self, provider: LoopbackProvider, url: str, message: Message,
                        result: SendResult) -> Tuple[Mapping[str, str], bytes]:
        body = {"message_id": message.id, "state": "delivered"}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()
