"""Fixtures and helpers of the Twilio tests: a Twilio simulator served by a real uvicorn on
127.0.0.1, and settings pointing smskit at it.

Import the fixtures into a test module (``from twilio_helpers import twilio_sim  # noqa: F401``)
and override ``twilio_sim_config`` there to start the simulator with other settings.
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest

from smskit.config import Settings
from smskit.testing.servers import serve_in_thread
from smskit_twilio.testing.simulator import DEFAULT_NUMBER, SimulatorConfig, TwilioSimulator

SimServer = Tuple[TwilioSimulator, str]


@pytest.fixture
def twilio_sim_config() -> SimulatorConfig:
    """The simulator's starting settings (seeded, no faults, no auto-progress)."""
    return SimulatorConfig(seed=1)


@pytest.fixture
def twilio_sim(twilio_sim_config: SimulatorConfig) -> Iterator[SimServer]:
    """A running simulator and its server's base URL (the API is at the root)."""
    simulator = TwilioSimulator(twilio_sim_config)
    with serve_in_thread(simulator.app) as base_url:
        try:
            yield simulator, base_url
        finally:
            # Closed before the server stops, so a request held by a fault lets go at once.
            simulator.close()


def twilio_settings(sim: TwilioSimulator, base_url: str, **extra: Any) -> Settings:
    """Settings for the ``twilio`` provider against ``sim`` served at ``base_url``."""
    values = {"provider": "twilio", "twilio_base_url": base_url,
              "twilio_account_sid": sim.config.account_sid,
              "twilio_auth_token": sim.config.auth_token, "twilio_from": DEFAULT_NUMBER,
              "twilio_reconcile_grace": "0"}
    values.update({k: str(v) for k, v in extra.items() if v is not None})
    return Settings.load(environ={}, **values)
