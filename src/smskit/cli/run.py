"""``smskit serve`` and ``smskit worker``: the two long-running processes."""

from __future__ import annotations

import logging
import sys

import click

from smskit.cli._base import (
    AppState,
    database_url,
    emit_json,
    err_console,
    out_console,
    pass_state,
    require_server_extra,
    to_jsonable,
)

__all__ = ["COMMANDS"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Server processes sharing the port (each with its own store connection).")
@pass_state
def serve(state: AppState, host: str, port: int, log_level: str, workers: int) -> None:
    """Run the webhook server (status callbacks and replies; /healthz, /metrics).

    \b
    Example:
      SMSKIT_WEBHOOK_SECRET=... SMSKIT_PUBLIC_URL=https://sms.example.com smskit serve --port 8000
    """
    require_server_extra("smskit serve")
    from smskit.server.app import serve as run_server
    from smskit.server.workers import serve_workers

    settings = state.settings()
    console = err_console()
    if not settings.webhook_secret:
        console.print("warning: SMSKIT_WEBHOOK_SECRET is not set: webhooks will be refused",
                      style="yellow", markup=False, soft_wrap=True)
    if not settings.public_url:
        console.print("warning: SMSKIT_PUBLIC_URL is not set: the gateway is not told where "
                      "to send callbacks", style="yellow", markup=False, soft_wrap=True)
    if workers == 1:
        run_server(state.kit(), host=host, port=port, log_level=log_level)
        return
    if settings.database_url.startswith("sqlite"):
        console.print("note: on SQLite the worker processes write one at a time, each commit "
                      "carrying fewer callbacks than one process's would: expect no gain over "
                      "--workers 1 (see docs/server.md)", style="yellow", markup=False,
                      soft_wrap=True)
    # The store is opened (and its schema brought up to date) once here, so a wrong database
    # fails the command before any worker starts; each worker opens its own.
    state.kit().store.ping()
    state.close()
    serve_workers(workers, host=host, port=port, log_level=log_level,
                  config_file=state.config_file, database_url=database_url(state.database),
                  provider=state.provider)


@click.command()
@click.option("--once", is_flag=True, help="Run one pass (schedules, reconcile, send) and exit.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between passes.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the pass as JSON.")
@pass_state
def worker(state: AppState, once: bool, interval: float, as_json: bool) -> None:
    """Send due messages, run schedules and reconcile, every INTERVAL seconds until stopped
    (SIGTERM / Ctrl-C finish the current pass first).

    \b
    Example:
      smskit worker --interval 10
    """
    from smskit.worker import Worker

    runner = Worker(state.kit(), interval=interval)
    if not once:
        if not state.debug:  # the worker reports each busy cycle on smskit's INFO log
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger = logging.getLogger("smskit")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        err_console().print(f"worker running every {interval:g}s (Ctrl-C to stop)",
                            markup=False)
        runner.run()
        return
    report = runner.run_once()
    if as_json:
        data = to_jsonable(report)
        data["sent"] = report.sent
        emit_json(data)
        return
    out_console().print(report.describe(), markup=False)


COMMANDS = [serve, worker]
