"""Receiving provider callbacks: the one webhook gate and its authentication."""
