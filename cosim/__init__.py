"""Co-simulation: cocotb testbenches, drivers, scoreboards and runner helpers."""
