"""Testing aids shipped with the Kolmeya plugin: the local Kolmeya simulator."""
