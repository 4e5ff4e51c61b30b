"""``smskit db upgrade`` and ``smskit db check``: the SQL store's schema, for operators.

Opening a SQL store migrates it anyway; these commands let a deployment do it as a step of its
own (before the new version's processes start) and let a health check or a script ask whether
a database is behind this version of smskit without changing it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import click

from smskit.cli._base import AppState, emit_json, missing_sqlite_file, out_console, pass_state
from smskit.errors import ConfigurationError, SmsKitError

__all__ = ["COMMANDS", "SchemaBehindError"]

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


class SchemaBehindError(SmsKitError):
    """The database's schema is not the newest this smskit ships (``smskit db check``)."""


@click.group()
def db() -> None:
    """The SQL store's schema: upgrade it, or check it is current."""


def _sql_url(state: AppState) -> str:
    from smskit.plugins import store_scheme

    url = state.settings().database_url
    if store_scheme(url) not in ("sqlite", "postgresql", "postgres"):
        raise ConfigurationError(
            f"smskit db works on SQL stores (sqlite://, postgresql://), not "
            f"{store_scheme(url)}://; an odoo:// store migrates its sidecar (odoo_sidecar_url) "
            "when it opens: give that URL with --database")
    return url


def _state(url: str, current: Optional[str]) -> Dict[str, Any]:
    from smskit.store.sql.engine import head_revision, known_revisions, redact_url

    head = head_revision()
    known = current is None or current in known_revisions()
    return {"database": redact_url(url), "current": current, "head": head,
            "up_to_date": current == head, "known": known}


@db.command("upgrade")
@_JSON
@pass_state
def db_upgrade(state: AppState, as_json: bool) -> None:
    """Bring the database to the newest migration (creating it if needed); a no-op when it is
    there already. Safe to run while other processes use it.

    \b
    Example:
      smskit --database postgresql://smskit@db/smskit db upgrade
    """
    from smskit.store.sql import schema_revision, upgrade

    url = _sql_url(state)
    before = None if missing_sqlite_file(url) is not None else schema_revision(url)
    report = _state(url, before)
    if not report["known"]:
        raise SchemaBehindError(
            f"the database is at revision {before}, which this smskit does not know (a newer "
            "smskit migrated it?): upgrade smskit, not the database")
    upgrade(url)
    after = _state(url, schema_revision(url))
    after["previous"] = before
    if as_json:
        emit_json(after)
        return
    if before == after["current"]:
        out_console().print(f"{after['database']}: already at {after['head']} (newest)",
                            markup=False)
    else:
        out_console().print(f"{after['database']}: upgraded from {before or 'empty'} to "
                            f"{after['current']}", markup=False)


@db.command("check")
@_JSON
@pass_state
def db_check(state: AppState, as_json: bool) -> None:
    """Show the database's schema revision and the newest one; exit 1 when they differ
    (nothing is changed, and a missing SQLite file is not created).

    \b
    Example:
      smskit db check || smskit db upgrade
    """
    from smskit.store.sql import schema_revision

    url = _sql_url(state)
    current = None if missing_sqlite_file(url) is not None else schema_revision(url)
    report = _state(url, current)
    if as_json:
        emit_json(report)
    elif report["up_to_date"]:
        out_console().print(f"{report['database']}: at {current} (newest)", markup=False)
    if report["up_to_date"]:
        return
    if not report["known"]:
        raise SchemaBehindError(
            f"{report['database']} is at revision {current}, which this smskit does not know "
            f"(newest here: {report['head']}): a newer smskit migrated it")
    where = f"is at {current}" if current else "has no smskit schema yet"
    raise SchemaBehindError(f"{report['database']} {where}, the newest is {report['head']}: "
                            "run `smskit db upgrade`")


COMMANDS = [db]
