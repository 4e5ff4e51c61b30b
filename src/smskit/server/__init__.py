"""The reference webhook server (``pip install 'smskit-sdk[server]'``).

:func:`create_app` builds the Starlette app and :func:`serve` runs it under uvicorn. Starlette
is imported when one of them is first used, not when ``smskit.server`` is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from smskit.server.app import create_app, serve

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    """Import the Starlette app lazily."""
    if name in ("create_app", "serve"):
        from smskit.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
