"""``smskit serve --workers N``: the webhook server in several processes, run by uvicorn.

uvicorn's own multi-process mode does the process management: the parent binds the socket,
starts ``N`` worker processes (``spawn``) that accept on it, restarts one that dies, and on
SIGTERM or Ctrl-C stops them all (each finishes the requests in hand) before it exits. What
smskit adds is what a worker needs to be the same server as ``smskit serve``:

* each worker builds its own :class:`~smskit.kit.SmsKit` (its own store connection, providers
  and group commit of status events: :mod:`smskit.server.batcher`) from the same settings as
  the parent, which hands them over in the :data:`ENVIRONMENT` variable (the ``--config``,
  ``--database`` and ``--provider`` options; the rest comes from ``SMSKIT_*`` and
  ``smskit.toml`` as in the parent); the kit is closed when the worker stops;
* the limits of :mod:`smskit.server.limits` apply in each worker (the connection cap is per
  process), with the guarded protocol as a module-level class (:class:`WorkerH11Protocol`),
  which uvicorn can hand to a spawned process;
* log lines carry the process id (``INFO [4242] ...``), so what each worker did can be told
  apart;
* the ``/metrics`` counters are added up over the workers: the command points
  ``PROMETHEUS_MULTIPROC_DIR`` at a new directory of its own (removed when it stops) unless
  the operator set one, where each worker keeps its counters (:mod:`smskit.server.metrics`).

A status callback is answered ``200`` after its events are committed, in whichever worker took
it; the store makes concurrent writers safe (SQLite: one writer at a time under
``BEGIN IMMEDIATE`` with a busy timeout; PostgreSQL: row locks), and a repeated callback
changes nothing. With ``--workers 1``, :func:`smskit.server.app.serve` runs one process as
before.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Optional

from smskit.errors import ConfigurationError
from smskit.server.metrics import MULTIPROCESS_DIR
from smskit.server.protocol import GuardedH11Protocol

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ENVIRONMENT", "WorkerH11Protocol", "serve_workers", "worker_app"]

#: The variable through which the parent hands its options to the worker processes.
ENVIRONMENT = "_SMSKIT_SERVE_OPTIONS"  # not SMSKIT_*: that would be read as a setting


class WorkerH11Protocol(GuardedH11Protocol):
    """The guarded protocol of a worker process; :func:`worker_app` sets its limits there."""

    waiting: collections.OrderedDict[GuardedH11Protocol, None] = collections.OrderedDict()


def _options() -> Dict[str, Any]:
    raw = os.environ.get(ENVIRONMENT)
    if not raw:
        raise ConfigurationError(f"{ENVIRONMENT} is not set: the worker app is started by "
                                 "`smskit serve --workers N`")
    options: Dict[str, Any] = json.loads(raw)
    return options


def worker_app() -> Starlette:
    """The app of one worker process (uvicorn calls this factory in each worker)."""
    from smskit.config import Settings
    from smskit.kit import SmsKit
    from smskit.server.app import create_app
    from smskit.server.limits import FD_RESERVE, ServerLimits, raise_fd_limit

    options = _options()
    settings = Settings.load(config_file=options.get("config_file"),
                             database_url=options.get("database_url"),
                             provider=options.get("provider"))
    limits = ServerLimits.from_settings(settings)
    limits = limits.within_fd_limit(raise_fd_limit(limits.max_connections + FD_RESERVE))
    WorkerH11Protocol.header_timeout = limits.header_timeout
    WorkerH11Protocol.max_connections = limits.max_connections
    return create_app(SmsKit(settings), settings=settings, bind_host=options.get("host"),
                      close_kit=True)


def serve_workers(workers: int, *, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info", config_file: Optional[str] = None,
                  database_url: Optional[str] = None, provider: Optional[str] = None) -> None:
    """Run :func:`worker_app` in ``workers`` processes under uvicorn until stopped.

    ``config_file``, ``database_url`` and ``provider`` are the command's options, read by each
    worker over ``SMSKIT_*`` and ``smskit.toml`` as :meth:`Settings.load` does. The settings
    are read here first, so a malformed one stops the command before any process starts.
    """
    import uvicorn

    from smskit.config import Settings
    from smskit.server.app import log_config
    from smskit.server.limits import ServerLimits

    if workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, not {workers}")
    settings = Settings.load(config_file=config_file, database_url=database_url,
                             provider=provider)
    limits = ServerLimits.from_settings(settings)
    os.environ[ENVIRONMENT] = json.dumps({
        "config_file": config_file, "database_url": database_url, "provider": provider,
        "host": host})
    options = {**limits.uvicorn_options(), "http": WorkerH11Protocol}  # limits set per worker
    # the workers are spawned: they read the variable when they import prometheus_client
    counters = None
    if not os.environ.get(MULTIPROCESS_DIR):
        counters = os.environ[MULTIPROCESS_DIR] = tempfile.mkdtemp(prefix="smskit-metrics-")
    try:
        uvicorn.run("smskit.server.workers:worker_app", factory=True, workers=workers,
                    host=host, port=port, log_level=log_level, access_log=False,
                    log_config=log_config(log_level, with_pid=True), **options)
    finally:
        if counters is not None:
            del os.environ[MULTIPROCESS_DIR]
            shutil.rmtree(counters, ignore_errors=True)
