"""``smskit demo``: the whole product on loopback (see :mod:`smskit.cli.scenario`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import click

from smskit.cli._base import (
    AppState,
    brl,
    cells,
    emit_json,
    err_console,
    out_console,
    pass_state,
    require_server_extra,
)
from smskit.errors import SmsKitError

if TYPE_CHECKING:
    from smskit.cli.failover import FailoverReport
    from smskit.cli.scenario import DemoReport

__all__ = ["COMMANDS"]

_STATE_STYLES = {
    "delivered": "green", "sent": "cyan", "deferred": "yellow", "error": "red",
    "expired": "magenta", "rejected": "red", "canceled": "yellow",
}


class DemoFailed(SmsKitError):
    """The demo ran but did not reach the expected states."""


@click.command()
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file to create (must not exist; default: a temporary one).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
@click.option("--failover", is_flag=True,
              help="Take Kolmeya down mid-campaign; the rest goes out through Twilio.")
@pass_state
def demo(state: AppState, db_path: Optional[Path], as_json: bool, failover: bool) -> None:
    """Run a complete pt-BR scenario against a local Kolmeya simulator, with nothing configured.

    Starts the simulator and the webhook server on loopback, sends a templated bulk reminder
    (one landline rejected, one blacklisted number canceled, one reminder deferred by quiet
    hours), brings delivery callbacks back through the webhook server, processes a "SAIR"
    opt-out reply and materialises a daily schedule once. Exits 1 if any step went wrong.

    With --failover: Kolmeya and Twilio simulators, the route "* => kolmeya, twilio"; the
    Kolmeya simulator is taken down after the first wave of a campaign, its circuit opens and
    the rest goes out through Twilio. Prints the totals per provider; exits 1 if a message was
    lost, sent twice or not moved.

    \b
    Example:
      smskit demo
      smskit demo --json
      smskit demo --failover
    """
    from smskit.cli.scenario import run_demo

    require_server_extra("smskit demo")
    console = err_console()
    show = not as_json

    def progress(line: str) -> None:
        if show:
            console.print(f"- {line}", markup=False, highlight=False)

    if failover:
        _failover(db_path, as_json, progress)
        return
    report = run_demo(db_path, progress=progress)
    if as_json:
        emit_json({"ok": report.ok, **_fields(report)})
    else:
        _print(report)
    if not report.ok:
        raise DemoFailed("the demo did not reach the expected states: "
                         + "; ".join(report.problems))


def _failover(db_path: Optional[Path], as_json: bool,
              progress: Callable[[str], None]) -> None:
    from smskit.cli.failover import run_failover_demo

    report = run_failover_demo(db_path, progress=progress)
    if as_json:
        emit_json({"ok": report.ok, **_fields(report)})
    else:
        _print_failover(report)
    if not report.ok:
        raise DemoFailed("the failover demo did not reach the expected states: "
                         + "; ".join(report.problems))


def _print_failover(report: FailoverReport) -> None:
    from rich.table import Table

    console = out_console()
    table = Table(title=f"Totals per provider (routes: {report.routes})")
    for column in ("provider", "messages", "sent", "delivered", "failed", "moved in",
                   "moved out", "cost", "circuit"):
        table.add_column(column, justify="left" if column in ("provider", "circuit")
                         else "right")
    for p in report.providers:
        table.add_row(*cells(p.provider, p.messages, p.sent, p.delivered, p.failed,
                             p.moved_in, p.moved_out, brl(p.cost), p.circuit))
    console.print(table)
    took = ("-" if report.failover_seconds is None else f"{report.failover_seconds:.2f}s")
    console.print(f"lost: {report.lost}; sent twice: {report.sent_twice}; from Kolmeya going "
                  f"down to the first message through Twilio: {took}; took "
                  f"{report.elapsed_seconds:.1f}s", markup=False)
    if report.ok:
        console.print("failover demo OK: nothing lost, nothing sent twice",
                      style="bold green", markup=False)


def _fields(report: Any) -> Dict[str, Any]:
    from smskit.cli._base import to_jsonable

    data = to_jsonable(report)
    return data if isinstance(data, dict) else {}


def _print(report: DemoReport) -> None:
    from rich.table import Table
    from rich.text import Text

    console = out_console()
    table = Table(title="Fatura de dezembro: where each reminder ended", show_lines=False)
    for column, justify in (("#", "right"), ("contact", "left"), ("phone", "left"),
                            ("state", "left"), ("cost", "right"), ("detail", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for number, item in enumerate(report.contacts, 1):
        state = Text(item.state, style=_STATE_STYLES.get(item.state, ""))
        table.add_row(*cells(number, item.name, item.phone, state,
                             brl(item.cost) if item.cost is not None else "-", item.detail))
    console.print(table)

    totals = report.totals
    summary = Table(title="totals", show_header=True)
    names = ("sent", "delivered", "failed", "rejected", "canceled", "deferred")
    for name in (*names, "cost"):
        summary.add_column(name, justify="right")
    summary.add_row(*cells(*(totals.get(name, 0) for name in names), brl(totals.get("cost"))))
    console.print(summary)
    console.print(f"failed = {totals.get('error', 0)} not delivered (error) + "
                  f"{totals.get('expired', 0)} expired; quiet hours {report.quiet_hours} "
                  f"({report.timezone})", markup=False)

    optout = report.optout
    if optout:
        listed = "now on the blacklist" if optout.get("blacklisted") else "NOT blacklisted"
        console.print(f"opt-out: {optout['name']} ({optout['phone']}) replied "
                      f"{optout['reply']!r} -> {listed}", markup=False)
    schedule = report.schedule
    if schedule:
        console.print(
            f"schedule {schedule['name']} ({schedule['rrule']}): run_due called twice -> "
            f"{schedule['first_call_runs']} run, then {schedule['second_call_runs']}; "
            f"{schedule['messages']} message(s) queued, {schedule['canceled']} canceled "
            "(opted out)", markup=False)
    calls = report.callbacks
    console.print(f"webhook server: {calls.get('statuses', 0)} status(es) and "
                  f"{calls.get('replies', 0)} reply in {calls.get('accepted', 0)} callback(s); "
                  f"gateway balance now {brl(report.balance)}; took "
                  f"{report.elapsed_seconds:.1f}s", markup=False)
    if report.ok:
        console.print("demo OK: every expected state was reached", style="bold green",
                      markup=False)


COMMANDS = [demo]
