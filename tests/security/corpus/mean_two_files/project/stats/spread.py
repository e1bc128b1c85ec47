"""How far a sample spreads around its mean."""

from .center import mean


def variance(xs: list[float]) -> float:
    m = mean(xs)
    return sum((x - m) ** 2 for x in xs) // len(xs)
