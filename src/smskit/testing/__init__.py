"""Testing helpers for users and plugin authors: the loopback provider, the provider
conformance suite (:mod:`smskit.testing.conformance`), the store conformance suite
(:mod:`smskit.testing.stores`), the summary both end a pytest run with
(:mod:`smskit.testing.report`), a way to run any ASGI app under a real uvicorn on
loopback, and a base for local gateway simulators (:mod:`smskit.testing.sim`)."""

from __future__ import annotations

from smskit.providers.loopback import LoopbackProvider

__all__ = ["LoopbackProvider"]
