"""A base for local gateway simulators, for tests, demos and benchmarks: smskit's own provider
simulators are built on it, and a third provider's simulator can be too.

A simulator is a fake gateway on loopback that answers like the real API and misbehaves on
purpose (seeded, so a run repeats). What every one of them needs, with no web framework in it:

- :class:`~smskit.testing.sim.base.SimulatorBase`: settings, clock, lock, the seeded
  :class:`~smskit.testing.sim.chance.Chance`, the background progress thread, and
  ``configure`` / ``advance`` / ``reset`` / ``close``; the subclass brings its state, its
  progress rule, its statistics and its app;
- :class:`~smskit.testing.sim.callbacks.CallbackSender`: webhooks queued and POSTed with
  retries, doubling backoff and the drop / duplicate / shuffle switches; the subclass says how
  one goes on the wire;
- :class:`~smskit.testing.sim.settings.SimulatorSettings` and the converters and validators of
  :mod:`smskit.testing.sim.settings`, for an ``attrs.frozen`` settings class.

Serving it (Starlette and uvicorn, the ``server`` extra) is :mod:`smskit.testing.sim.serving`,
imported on its own.
"""

from __future__ import annotations

from smskit.testing.sim.base import BaseSettings, SimulatorBase, utcnow
from smskit.testing.sim.callbacks import CallbackSender, CallbackSettings, PendingCallback
from smskit.testing.sim.chance import Chance
from smskit.testing.sim.settings import SimulatorSettings

__all__ = [
    "BaseSettings",
    "CallbackSender",
    "CallbackSettings",
    "Chance",
    "PendingCallback",
    "SimulatorBase",
    "SimulatorSettings",
    "utcnow",
]
