"""A faithful local Kolmeya SMS gateway, for tests, the demo and the benchmarks.

It behaves like the confirmed facts of the API (``docs/kolmeya.md``: POST-only JSON API under
``/api/v1``, Bearer token, ``{"errors": [...]}`` bodies, request and message UUIDs, per-number
rejections in ``invalids`` / ``duplicates`` / ``blacklist`` / ``not_disturb``, national phone
numbers without 55, status codes 1-6) and makes every unknown a setting of
:class:`SimulatorConfig`: webhook shape and retry policy, balance format, delays, and fault
switches (429, 500, slow answers, a request accepted whose answer never arrives in time, dropped /
duplicated / shuffled callbacks).

In a test::

    sim = KolmeyaSimulator(SimulatorConfig(token="t"))
    with serve_in_thread(sim.app) as server:
        client = httpx.Client(base_url=f"{server}/api/v1", headers={"Authorization": "Bearer t"})
        client.post("/sms/store", json={"messages": [{"phone": 48991234567, "message": "Oi"}]})
        sim.advance()          # 1 -> 2 -> final; callbacks are POSTed
    sim.close()

From the shell (auto-progress on, control endpoints under ``/_sim/``)::

    smskit kolmeya simulate --port 8025
"""

from __future__ import annotations

from typing import Any

from smskit.testing.sim.serving import run_simulator
from smskit_kolmeya.testing.sim.app import API_PREFIX, create_app
from smskit_kolmeya.testing.sim.config import FINAL_CODES, STATUS_TEXT, SimulatorConfig
from smskit_kolmeya.testing.sim.core import KolmeyaSimulator
from smskit_kolmeya.testing.sim.state import SimMessage, SimRequest

__all__ = [
    "API_PREFIX",
    "FINAL_CODES",
    "STATUS_TEXT",
    "KolmeyaSimulator",
    "SimMessage",
    "SimRequest",
    "SimulatorConfig",
    "create_app",
    "main",
]


def main(host: str = "127.0.0.1", port: int = 8025, *, log_level: str = "info",
         control: bool = True, **config: Any) -> None:
    """Serve a simulator under uvicorn until interrupted.

    ``config`` holds :class:`SimulatorConfig` settings; ``auto_progress`` defaults to ``True``
    here so messages move on their own. The API is at ``http://{host}:{port}/api/v1``.
    """
    config.setdefault("auto_progress", True)
    run_simulator(KolmeyaSimulator(SimulatorConfig(**config)), create_app, host=host, port=port,
                  log_level=log_level, control=control)
