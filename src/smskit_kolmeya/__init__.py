"""smskit_kolmeya: see the module docstrings."""
