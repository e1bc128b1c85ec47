"""Sample inputs for `selfheal demo` (a service with a real bug and its tests)."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent / "checkout"
