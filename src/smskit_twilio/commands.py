"""``smskit twilio ...`` commands, added through the ``register_commands`` hook.

``smskit twilio simulate`` serves a local Twilio Messages API (the simulator) for trying smskit
or any Twilio client without the real service::

    smskit twilio simulate --port 8026 --inbound-url http://127.0.0.1:8000/webhooks/twilio/reply
    SMSKIT_PROVIDER=twilio SMSKIT_TWILIO_BASE_URL=http://127.0.0.1:8026 \\
    SMSKIT_TWILIO_ACCOUNT_SID=AC5f1a5f1a5f1a5f1a5f1a5f1a5f1a5f1a \\
    SMSKIT_TWILIO_AUTH_TOKEN=sim-auth-token SMSKIT_TWILIO_FROM=+15005550006 \\
        smskit send +5511987654321 "Olá!"
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import click

__all__ = ["twilio"]

_DEFAULT_TOKEN = "sim-auth-token"  # noqa: S105 - the simulator's documented default


def _outcomes(pairs: Tuple[str, ...]) -> Optional[Dict[str, float]]:
    if not pairs:
        return None
    out: Dict[str, float] = {}
    for pair in pairs:
        status, sep, share = pair.partition("=")
        try:
            if not sep:
                raise ValueError(pair)
            out[status.strip()] = float(share)
        except ValueError as exc:
            raise click.BadParameter(f"expected STATUS=SHARE (e.g. delivered=0.9), got {pair!r}",
                                     param_hint="--outcome") from exc
    return out


@click.group()
def twilio() -> None:
    """Twilio tools: a local simulator of the Messages API."""


@twilio.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8026, show_default=True, type=click.IntRange(0, 65535))
@click.option("--auth-token", default=_DEFAULT_TOKEN, show_default=True,
              help="The auth token the simulated account accepts and signs callbacks with.")
@click.option("--number", "numbers", multiple=True, metavar="E164",
              help="A phone number of the account (repeatable; default +15005550006).")
@click.option("--inbound-url", default=None,
              help="Where incoming messages are POSTed (the number's messaging webhook).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of outcomes and faults (same seed, same run).")
@click.option("--auto/--no-auto", "auto_progress", default=True, show_default=True,
              help="Move messages to their final status on their own.")
@click.option("--delivery-delay", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds from creation to the final status.")
@click.option("--outcome", "outcomes", multiple=True, metavar="STATUS=SHARE",
              help="Share of a final status: delivered, undelivered, failed (repeatable).")
@click.option("--opted-out", multiple=True, metavar="E164",
              help="A number that already replied STOP (creates answer 21610; repeatable).")
@click.option("--fail-429-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests answered 429 (error 20429).")
@click.option("--fail-500-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests answered 500 before anything is created.")
@click.option("--timeout-after-accept-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of creates that succeed but whose answer is held (a client timeout).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def simulate(host: str, port: int, auth_token: str, numbers: Tuple[str, ...],
             inbound_url: Optional[str], seed: int, auto_progress: bool, delivery_delay: float,
             outcomes: Tuple[str, ...], opted_out: Tuple[str, ...], fail_429_rate: float,
             fail_500_rate: float, timeout_after_accept_rate: float, log_level: str) -> None:
    """Serve a simulated Twilio Messages API at http://HOST:PORT until Ctrl-C.

    \b
    Example:
      smskit twilio simulate --port 8026 --outcome delivered=0.9 --outcome undelivered=0.1
    """
    from smskit_twilio.testing.simulator import SimulatorConfig, main

    config: Dict[str, Any] = {
        "auth_token": auth_token, "seed": seed, "auto_progress": auto_progress,
        "delivery_delay": delivery_delay, "opted_out": list(opted_out),
        "inbound_url": inbound_url, "fail_429_rate": fail_429_rate,
        "fail_500_rate": fail_500_rate, "timeout_after_accept_rate": timeout_after_accept_rate,
    }
    if numbers:
        config["numbers"] = list(numbers)
    shares = _outcomes(outcomes)
    if shares is not None:
        config["outcomes"] = shares
    account = SimulatorConfig().account_sid
    shown = auth_token if auth_token == _DEFAULT_TOKEN else "the one given with --auth-token"
    click.echo(f"Twilio simulator: http://{host}:{port} (account {account}, auth token: "
               f"{shown})", err=True)
    main(host, port, log_level=log_level, **config)
