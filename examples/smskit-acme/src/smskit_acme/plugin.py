"""The plugin's hooks, named by the ``smskit`` entry point in ``pyproject.toml``.

smskit imports this module when it loads its plugins; it stays light (no HTTP client, no
provider module) until a kit asks for an ``acme`` provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import smskit

if TYPE_CHECKING:
    from smskit.config import Settings
    from smskit.provider import Provider, ProviderFactory


def _acme(settings: Settings) -> Provider:
    from smskit_acme.provider import AcmeProvider  # imported when the first kit needs it

    return AcmeProvider.from_settings(settings)


@smskit.hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register the ``acme`` provider (configured by the ``acme_*`` settings)."""
    register("acme", _acme)
