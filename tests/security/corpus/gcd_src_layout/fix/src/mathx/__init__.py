"""Small number theory helpers."""

from .gcd import gcd, lcm

__all__ = ["gcd", "lcm"]
