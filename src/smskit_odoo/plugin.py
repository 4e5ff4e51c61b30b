"""Odoo persistence plugin hooks (not yet implemented: registers nothing)."""
