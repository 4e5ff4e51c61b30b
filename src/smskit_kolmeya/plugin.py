"""Kolmeya plugin hooks (filled by the Kolmeya transport)."""
