"""Thermocline hardware: Amaranth components, one unit per module."""
