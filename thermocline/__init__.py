"""Thermocline: shared layouts, command line, benchmarks and reports."""
