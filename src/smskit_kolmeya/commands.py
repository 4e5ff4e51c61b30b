"""``smskit kolmeya ...`` commands, added through the ``register_commands`` hook.

``smskit kolmeya simulate`` serves a local Kolmeya gateway (the simulator) for trying smskit,
an Odoo addon or any Kolmeya client without the real service::

    smskit kolmeya simulate --port 8025 --token dev-token
    SMSKIT_KOLMEYA_BASE_URL=http://127.0.0.1:8025/api/v1 SMSKIT_KOLMEYA_TOKEN=dev-token \\
        smskit send 11987654321 "Olá!"
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import click

__all__ = ["kolmeya"]

_DEFAULT_TOKEN = "sim-token"  # noqa: S105 - the simulator's documented default, not a secret


def _outcomes(pairs: Tuple[str, ...]) -> Optional[Dict[int, float]]:
    if not pairs:
        return None
    out: Dict[int, float] = {}
    for pair in pairs:
        code, sep, share = pair.partition("=")
        try:
            if not sep:
                raise ValueError(pair)
            out[int(code)] = float(share)
        except ValueError as exc:
            raise click.BadParameter(f"expected CODE=SHARE (e.g. 3=0.9), got {pair!r}",
                                     param_hint="--outcome") from exc
    return out


@click.group()
def kolmeya() -> None:
    """Kolmeya tools: a local simulator of the gateway."""


@kolmeya.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", default=_DEFAULT_TOKEN, show_default=True,
              help="The Bearer token the simulated API accepts.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of outcomes and faults (same seed, same run).")
@click.option("--auto/--no-auto", "auto_progress", default=True, show_default=True,
              help="Move messages to their final status on their own.")
@click.option("--delivery-delay", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds from acceptance to the final status.")
@click.option("--outcome", "outcomes", multiple=True, metavar="CODE=SHARE",
              help="Share of a final status code: 3 delivered, 4 not delivered, 5 rejected, "
                   "6 expired (repeatable).")
@click.option("--blacklist", multiple=True, metavar="PHONE",
              help="A number answered in 'blacklist' (national digits; repeatable).")
@click.option("--not-disturb", multiple=True, metavar="PHONE",
              help="A number on the 'Não Perturbe' register (repeatable).")
@click.option("--callback-shape", type=click.Choice(["nested", "flat"]), default="nested",
              show_default=True, help="Shape of the status callbacks.")
@click.option("--fail-429-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests answered 429.")
@click.option("--fail-500-rate", default=0.0, type=click.FloatRange(0, 1),
              help="Share of requests answered 500.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def simulate(host: str, port: int, token: str, seed: int, auto_progress: bool,
             delivery_delay: float, outcomes: Tuple[str, ...], blacklist: Tuple[str, ...],
             not_disturb: Tuple[str, ...], callback_shape: str, fail_429_rate: float,
             fail_500_rate: float, log_level: str) -> None:
    """Serve a simulated Kolmeya API at http://HOST:PORT/api/v1 until Ctrl-C.

    \b
    Example:
      smskit kolmeya simulate --port 8025 --token dev-token --outcome 3=0.9 --outcome 4=0.1
    """
    from smskit_kolmeya.testing.simulator import main as run_simulator

    config: Dict[str, Any] = {
        "token": token, "seed": seed, "auto_progress": auto_progress,
        "delivery_delay": delivery_delay, "blacklist": list(blacklist),
        "not_disturb": list(not_disturb), "callback_shape": callback_shape,
        "fail_429_rate": fail_429_rate, "fail_500_rate": fail_500_rate,
    }
    shares = _outcomes(outcomes)
    if shares is not None:
        config["outcomes"] = shares
    shown = token if token == _DEFAULT_TOKEN else "the one given with --token"
    click.echo(f"Kolmeya simulator: http://{host}:{port}/api/v1 (Bearer token: {shown})",
               err=True)
    run_simulator(host, port, log_level=log_level, **config)

