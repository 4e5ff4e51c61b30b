"""smskit_acrux: see the module docstrings."""
