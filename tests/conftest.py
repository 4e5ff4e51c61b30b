"""Shared fixtures: Kolmeya and Twilio simulators served by a real uvicorn on 127.0.0.1.

Override ``kolmeya_sim_config`` in a test module (or class) to start the simulator with other
settings; change them at run time with ``simulator.configure(...)``.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import pytest

from smskit.testing.servers import serve_in_thread
from smskit_kolmeya.testing.simulator import KolmeyaSimulator, SimulatorConfig
from smskit_twilio.testing import simulator as twilio_simulator
from twilio_helpers import Receiver

#: The Bearer token the default simulator accepts.
KOLMEYA_SIM_TOKEN = "sim-test-token"


@pytest.fixture
def kolmeya_sim_config() -> SimulatorConfig:
    """The simulator's starting settings (seeded, no faults, no auto-progress)."""
    return SimulatorConfig(token=KOLMEYA_SIM_TOKEN, seed=1)


@pytest.fixture
def kolmeya_sim(kolmeya_sim_config: SimulatorConfig) -> Iterator[Tuple[KolmeyaSimulator, str]]:
    """A running simulator and its server's base URL (the API is at ``base + "/api/v1"``)."""
    simulator = KolmeyaSimulator(kolmeya_sim_config)
    with serve_in_thread(simulator.app) as base_url:
        try:
            yield simulator, base_url
        finally:
            # Closed before the server stops, so a request held by a fault lets go at once.
            simulator.close()


@pytest.fixture
def twilio_sim_config() -> twilio_simulator.SimulatorConfig:
    """The Twilio simulator's starting settings (seeded, no faults, no auto-progress)."""
    return twilio_simulator.SimulatorConfig(seed=1)


@pytest.fixture
def twilio_sim(twilio_sim_config: twilio_simulator.SimulatorConfig,
               ) -> Iterator[Tuple[twilio_simulator.TwilioSimulator, str]]:
    """A running Twilio simulator and its server's base URL (the API is at the root)."""
    simulator = twilio_simulator.TwilioSimulator(twilio_sim_config)
    with serve_in_thread(simulator.app) as base_url:
        try:
            yield simulator, base_url
        finally:
            simulator.close()


@pytest.fixture
def receiver() -> Iterator[Tuple[Receiver, str]]:
    """A running web app recording every request it gets, and its base URL."""
    found = Receiver()
    with serve_in_thread(found.app()) as base_url:
        yield found, base_url
