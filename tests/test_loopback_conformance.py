"""The loopback provider passes the provider conformance suite."""

from __future__ import annotations

from typing import Iterator, Optional

import pytest

from smskit.providers.loopback import LoopbackProvider
from smskit.testing.conformance import ProviderConformance


class TestLoopbackConformance(ProviderConformance):
    @pytest.fixture
    def provider(self) -> Iterator[LoopbackProvider]:
        provider = LoopbackProvider(max_batch=50)
        provider.refuse("+5511900000001", "invalid")
        yield provider
        provider.close()

    @pytest.fixture
    def refused_phone(self) -> Optional[str]:
        return "+5511900000001"
