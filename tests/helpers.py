"""Shared test helpers."""

import os


def scale(n: int) -> int:
    """``n`` random cases, times ``THERMOCLINE_SCALE`` (``make regress`` sets 10)."""
    return n * int(os.environ.get("THERMOCLINE_SCALE", "1"))
