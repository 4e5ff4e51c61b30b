"""The ``smskit`` command: send, track, schedule and serve SMS from a shell.

Configuration comes from ``SMSKIT_*`` environment variables and an optional ``smskit.toml``
(``--config FILE``). Every command that prints data takes ``--json``. An error prints one red
line on stderr and exits 1 (2 for a usage error); ``--debug`` shows the traceback instead.
Plugins add commands through the ``register_commands`` hook, loaded only when a command name
is not a built-in one (or for ``--help``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, List, Optional, Sequence

import click

from smskit import __version__
from smskit.cli._base import AppState, err_console
from smskit.config import redact
from smskit.errors import SmsKitError

__all__ = ["SmskitGroup", "build_cli", "cli", "main"]

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_USAGE = 2


class SmskitGroup(click.Group):
    """A click group that loads plugin commands lazily and turns errors into one red line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    # -- plugin commands ---------------------------------------------------------------------
    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from smskit.config import Settings
        from smskit.plugins import Plugins

        config = ctx.params.get("config") if ctx is not None else None
        try:
            plugins = Plugins(Settings.load(config_file=config))
            plugins.hook.register_commands(cli=self)
        except Exception as exc:  # a broken plugin must not take the built-in commands down
            log.debug("plugin commands failed to load", exc_info=True)
            err_console().print(f"warning: plugin commands could not be loaded: {exc}",
                                style="yellow", markup=False, soft_wrap=True)

    def list_commands(self, ctx: click.Context) -> List[str]:
        """Built-in and plugin command names (loads the plugins once)."""
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        """A built-in command, else one a plugin registers."""
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._load_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command

    # -- error handling ----------------------------------------------------------------------
    def main(
        self,
        args: Optional[Sequence[str]] = None,
        prog_name: Optional[str] = None,
        complete_var: Optional[str] = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; errors become one red line and exit code 1 (usage errors: 2)."""
        state = extra.pop("obj", None)
        if not isinstance(state, AppState):
            state = AppState()
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False,
                                  obj=state, **extra)
            code = result if isinstance(result, int) else 0
        except click.UsageError as exc:
            code = _usage_error(exc)
        except click.ClickException as exc:
            _error_line(exc.format_message())
            code = exc.exit_code
        except click.Abort:
            _error_line("aborted")
            code = EXIT_ERROR
        except SmsKitError as exc:
            _traceback(state)
            _error_line(redact(str(exc), *state.secrets()))
            code = EXIT_ERROR
        except Exception as exc:
            _traceback(state)
            text = redact(f"{type(exc).__name__}: {exc}", *state.secrets())
            hint = "" if state.debug else " (run with --debug for the traceback)"
            _error_line(f"unexpected error: {text}{hint}")
            code = EXIT_ERROR
        finally:
            state.close()
        if standalone_mode:
            sys.exit(code)
        return code


def _traceback(state: AppState) -> None:
    if state.debug:
        sys.stderr.write(redact(traceback.format_exc(), *state.secrets()))
        sys.stderr.flush()


def _error_line(text: str) -> None:
    err_console().print(f"Error: {text}", style="bold red", markup=False, soft_wrap=True,
                        emoji=False)


def _usage_error(exc: click.UsageError) -> int:
    if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:
        click.echo(exc.ctx.get_help())  # a group run bare shows its help (as click < 8.2 did)
        return 0
    hint = ""
    if exc.ctx is not None:
        hint = f" (see '{exc.ctx.command_path} --help')"
    _error_line(f"{exc.format_message()}{hint}")
    return EXIT_USAGE


def build_cli() -> click.Group:
    """A fresh ``smskit`` command group with every built-in command."""

    @click.group(cls=SmskitGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
                  envvar="SMSKIT_CONFIG", metavar="FILE",
                  help="Settings file (default: ./smskit.toml if present).")
    @click.option("--database", "database", default=None, metavar="URL",
                  help="Store URL, or a SQLite file path (over SMSKIT_DATABASE_URL).")
    @click.option("--provider", "provider", default=None, metavar="NAME",
                  help="Provider name (over SMSKIT_PROVIDER).")
    @click.option("--debug", is_flag=True, help="Verbose logging, and tracebacks on errors.")
    @click.version_option(version=__version__, prog_name="smskit")
    @click.pass_context
    def group(ctx: click.Context, config: Optional[str], database: Optional[str],
              provider: Optional[str], debug: bool) -> None:
        """smskit: send, track and receive SMS (Kolmeya, Odoo, ChatRoom).

        Configure with SMSKIT_* environment variables or smskit.toml; --database and
        --provider win over both. Try `smskit demo`.
        """
        state = ctx.ensure_object(AppState)
        state.config_file = config
        state.database = database
        state.provider = provider
        state.debug = debug
        if debug:
            logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from smskit.cli import (
        blacklist,
        campaigns,
        db,
        demo,
        messaging,
        operator,
        plugins,
        run,
        schedules,
    )

    for module in (messaging, operator, blacklist, schedules, plugins, campaigns, run, db,
                   demo):
        for command in module.COMMANDS:
            group.add_command(command)
    return group


cli = build_cli()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console-script entry point (``smskit``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="smskit")
