"""Kolmeya plugin hooks: registers the ``kolmeya`` provider.

The client, provider and their dependencies are imported inside the factory, so loading the
plugin costs nothing until a Kolmeya provider is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from smskit.hookspecs import hookimpl

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.provider import Provider, ProviderFactory


def _kolmeya(settings: Settings) -> Provider:
    from smskit_kolmeya.provider import KolmeyaProvider

    return KolmeyaProvider.from_settings(settings)


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register the ``kolmeya`` provider (configured by the ``SMSKIT_KOLMEYA_*`` settings)."""
    register("kolmeya", _kolmeya)


# register_commands(cli) belongs here too: the ``smskit kolmeya simulate`` command is added
# with the simulator (src/smskit_kolmeya/simulator.py).
