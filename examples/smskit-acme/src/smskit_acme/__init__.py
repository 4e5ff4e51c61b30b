"""smskit-acme: the Acme SMS gateway as a smskit provider plugin (an example to copy)."""

from __future__ import annotations

__version__ = "0.1.0"
