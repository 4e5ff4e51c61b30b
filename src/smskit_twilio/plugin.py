"""Twilio plugin hooks: registers the ``twilio`` provider and ``smskit twilio``.

The client, provider and their dependencies are imported inside the factory, so loading the
plugin costs nothing until a Twilio provider is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from smskit.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from smskit.config import Settings
    from smskit.provider import Provider, ProviderFactory


def _twilio(settings: Settings) -> Provider:
    from smskit_twilio.provider import TwilioProvider

    return TwilioProvider.from_settings(settings)


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register the ``twilio`` provider (configured by the ``SMSKIT_TWILIO_*`` settings)."""
    register("twilio", _twilio)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``smskit twilio`` (``smskit twilio simulate``)."""
    from smskit_twilio.commands import twilio

    cli.add_command(twilio)
