"""Shared test helpers."""

from cosim.runner import scale

__all__ = ["scale"]
