"""Testing helpers for users and plugin authors: the loopback provider, the provider
conformance suite (:mod:`smskit.testing.conformance`), the store conformance suite
(:mod:`smskit.testing.stores`), the summary both end a pytest run with
(:mod:`smskit.testing.report`), and a way to run any ASGI app under a real uvicorn on
loopback."""

from __future__ import annotations

from smskit.providers.loopback import LoopbackProvider

__all__ = ["LoopbackProvider"]
