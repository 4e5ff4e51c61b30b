"""smskit_odoo: see the module docstrings."""
