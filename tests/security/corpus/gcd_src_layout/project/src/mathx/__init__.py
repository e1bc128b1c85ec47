"""Small number theory helpers."""

from .gcd import gcd

__all__ = ["gcd"]
