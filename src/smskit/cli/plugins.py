"""``smskit plugins``: what loaded, what is disabled, and how to fix what failed."""

from __future__ import annotations

from typing import List

import click

from smskit.cli._base import AppState, cells, emit_json, out_console, pass_state
from smskit.errors import SmsKitError

__all__ = ["COMMANDS"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.command()
@_JSON
@pass_state
def plugins(state: AppState, as_json: bool) -> None:
    """Which plugins loaded, which are disabled, and how to fix the ones that failed."""
    from smskit.plugins import Plugins

    manager = Plugins(state.settings())
    report = manager.report()
    problems: List[str] = []
    providers: List[str] = []
    stores: List[str] = []
    try:
        providers = sorted(manager.providers())
        stores = sorted(manager.stores())
    except SmsKitError as exc:
        problems.append(str(exc))
    if as_json:
        emit_json({"plugins": report, "providers": providers, "stores": stores,
                   "problems": problems})
        return
    from rich.table import Table

    table = Table(title="plugins")
    for column in ("name", "status", "distribution", "module", "detail / fix"):
        table.add_column(column, overflow="fold")  # a fix line is never cut short
    from rich.text import Text

    styles = {"loaded": "green", "disabled": "yellow", "failed": "red"}
    for item in report:
        detail = item.detail + (f"; fix: {item.fix}" if item.fix else "")
        table.add_row(*cells(item.name, Text(item.status, style=styles.get(item.status, "")),
                             item.distribution, item.module, detail))
    console = out_console()
    console.print(table)
    console.print(f"providers: {', '.join(providers) or 'none'}", markup=False)
    console.print(f"stores: {', '.join(stores) or 'none'}", markup=False)
    for problem in problems:
        console.print(f"problem: {problem}", style="red", markup=False)


COMMANDS = [plugins]
