"""``python -m smskit``: the same as the ``smskit`` command."""

from __future__ import annotations

from smskit.cli import main

if __name__ == "__main__":
    main()
