"""``smskit schedule`` (add, list, remove, run): one-shot and recurring sends."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import click

from smskit.cli._base import (
    AppState,
    cells,
    emit_json,
    local_time,
    out_console,
    parse_vars,
    parse_when,
    pass_state,
)
from smskit.errors import NotFoundError, ValidationError

__all__ = ["COMMANDS"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


# -- schedule --------------------------------------------------------------------------------
@click.group()
def schedule() -> None:
    """One-shot and recurring sends (run by `smskit worker`)."""


def _schedule_json(item: Any) -> Dict[str, Any]:
    return {"id": item.id, "name": item.name, "next_run_at": item.next_run_at,
            "rrule": item.rrule, "timezone": item.timezone, "active": item.active,
            "runs": item.runs, "last_run_at": item.last_run_at, "request": item.request}


@schedule.command("add")
@click.argument("name")
@click.option("--text", "text", required=True, help="Message template.")
@click.option("--to", "to", multiple=True, required=True, metavar="PHONE",
              help="A recipient (repeatable).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template variable (repeatable).")
@click.option("--at", "at", metavar="WHEN", help="Once, at ISO 8601 or HH:MM.")
@click.option("--rrule", help='Recurring, RFC 5545: "FREQ=DAILY;BYHOUR=9;BYMINUTE=0".')
@click.option("--tz", "tz", default=None, help="Time zone (default: the configured one).")
@_JSON
@pass_state
def schedule_add(state: AppState, name: str, text: str, to: Tuple[str, ...],
                 variables: Tuple[str, ...], at: Optional[str], rrule: Optional[str],
                 tz: Optional[str], as_json: bool) -> None:
    """Schedule a send NAME, once (--at) or recurring (--rrule).

    \b
    Example:
      smskit schedule add lembrete --text "Bom dia {{ nome }}!" --var nome=Ana \\
          --to 11987654321 --rrule "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
    """
    from smskit.outreach.scheduler import add_schedule

    if (at is None) == (rrule is None):
        raise click.UsageError("give exactly one of --at (once) or --rrule (recurring)")
    zone_name = tz or state.settings().timezone
    when = None
    if at is not None:
        try:
            when = parse_when(at, zone_name)
        except ValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="--at") from exc
    request = {"text": text, "recipients": list(to), "variables": parse_vars(variables)}
    created = add_schedule(state.kit(), name, request, at=when, rrule=rrule, tz=zone_name)
    if as_json:
        emit_json(_schedule_json(created))
        return
    out_console().print(f"schedule {created.id} ({created.name}): next run "
                        f"{local_time(created.next_run_at, created.timezone)}", markup=False)


@schedule.command("list")
@click.option("--active", "active_only", is_flag=True, help="Only active schedules.")
@_JSON
@pass_state
def schedule_list(state: AppState, active_only: bool, as_json: bool) -> None:
    """List schedules by next run."""
    items = state.kit().store.list_schedules(active_only=active_only)
    if as_json:
        emit_json([_schedule_json(item) for item in items])
        return
    from rich.table import Table

    table = Table(title=f"schedules ({len(items)})")
    table.add_column("id", no_wrap=True)
    for column in ("name", "next run", "rule", "runs"):
        table.add_column(column, overflow="fold" if column == "rule" else "ellipsis")
    for item in items:
        name = item.name if item.active else f"{item.name} (inactive)"
        table.add_row(*cells(item.id, name, local_time(item.next_run_at, item.timezone),
                             item.rrule or "once", item.runs))
    out_console().print(table)


@schedule.command("remove")
@click.argument("schedule_id")
@_JSON
@pass_state
def schedule_remove(state: AppState, schedule_id: str, as_json: bool) -> None:
    """Delete a schedule (messages it already created are kept)."""
    looking_for = f"schedule with id {schedule_id!r}"
    if not state.kit(looking_for=looking_for).store.remove_schedule(schedule_id):
        raise NotFoundError(f"no schedule with id {schedule_id!r}")
    if as_json:
        emit_json({"removed": schedule_id})
    else:
        out_console().print(f"schedule {schedule_id} removed", markup=False)


@schedule.command("run")
@_JSON
@pass_state
def schedule_run(state: AppState, as_json: bool) -> None:
    """Materialise every due occurrence now (exactly once; `smskit worker` also does this)."""
    from smskit.outreach.scheduler import run_due

    runs = run_due(state.kit())
    if as_json:
        emit_json(runs)
        return
    console = out_console()
    if not runs:
        console.print("nothing due", markup=False)
    for run in runs:
        console.print(f"{run.name} @ {local_time(run.occurrence, state.settings().timezone)}: "
                      f"{run.created} message(s) queued, {run.rejected} rejected, "
                      f"{run.canceled} canceled" + (f"; error: {run.error}" if run.error else ""),
                      markup=False)


COMMANDS = [schedule]
