"""Kolmeya plugin hooks: registers the ``kolmeya`` provider.

The client, provider and their dependencies are imported inside the factory, so loading the
plugin costs nothing until a Kolmeya provider is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from smskit.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from smskit.config import Settings
    from smskit.provider import Provider, ProviderFactory


def _kolmeya(settings: Settings) -> Provider:
    from smskit_kolmeya.provider import KolmeyaProvider

    return KolmeyaProvider.from_settings(settings)


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register the ``kolmeya`` provider (configured by the ``SMSKIT_KOLMEYA_*`` settings)."""
    register("kolmeya", _kolmeya)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add ``smskit kolmeya`` (``smskit kolmeya simulate``)."""
    from smskit_kolmeya.commands import kolmeya

    cli.add_command(kolmeya)
