"""A faithful local Twilio Messages API, for tests, the demo and the benchmarks.

It behaves as Twilio documents (``docs/twilio.md``): basic auth with the account SID and auth
token (or an API key), form-encoded creates under ``/2010-04-01/Accounts/{AccountSid}/``
answered 201 with the Message resource, Twilio's error bodies and codes (21211, 21610, 21612,
21614, 21617...), ``queued``/``accepted`` -> ``sent`` -> ``delivered``/``undelivered``/``failed``,
status callbacks and incoming messages POSTed form-encoded and signed with
``X-Twilio-Signature``, STOP/START handling, the paged Messages list with its ``To``, ``From``
and ``DateSent`` filters, and the Balance. Unknowns and faults are settings of
:class:`SimulatorConfig`: 429, 500, slow answers, a create accepted whose answer never arrives
in time (or arrives as a 500), dropped / duplicated / shuffled callbacks.

In a test::

    sim = TwilioSimulator(SimulatorConfig())
    with serve_in_thread(sim.app) as server:
        client = TwilioClient(sim.config.account_sid, sim.config.auth_token,
                              from_=DEFAULT_NUMBER, base_url=server)
        client.send_message(Message.new("+5511987654321", "Oi"))
        sim.advance()          # queued -> sent -> final; callbacks are POSTed
    sim.close()

From the shell (auto-progress on, control endpoints under ``/_sim/``)::

    smskit twilio simulate --port 8026
"""

from __future__ import annotations

from typing import Any

from smskit.testing.sim.serving import run_simulator
from smskit_twilio.testing.sim.app import create_app
from smskit_twilio.testing.sim.config import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_NUMBER,
    DEFAULT_SERVICE_SID,
    FINAL_STATUSES,
    SimulatorConfig,
)
from smskit_twilio.testing.sim.core import TwilioApiError, TwilioSimulator
from smskit_twilio.testing.sim.state import SimMessage

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_NUMBER",
    "DEFAULT_SERVICE_SID",
    "FINAL_STATUSES",
    "SimMessage",
    "SimulatorConfig",
    "TwilioApiError",
    "TwilioSimulator",
    "create_app",
    "main",
]


def main(host: str = "127.0.0.1", port: int = 8026, *, log_level: str = "info",
         control: bool = True, **config: Any) -> None:
    """Serve a simulator under uvicorn until interrupted.

    ``config`` holds :class:`SimulatorConfig` settings; ``auto_progress`` defaults to ``True``
    here so messages move on their own. Clients use ``http://{host}:{port}`` as the base URL.
    """
    config.setdefault("auto_progress", True)
    run_simulator(TwilioSimulator(SimulatorConfig(**config)), create_app, host=host, port=port,
                  log_level=log_level, control=control)
