"""Providers built into the core: :class:`~smskit.providers.loopback.LoopbackProvider`."""
