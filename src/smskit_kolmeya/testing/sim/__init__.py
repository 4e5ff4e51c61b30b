"""The Kolmeya simulator's parts; import the public names
from :mod:`smskit_kolmeya.testing.simulator`."""
