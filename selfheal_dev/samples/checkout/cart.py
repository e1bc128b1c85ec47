"""Shopping cart maths for the checkout service."""


def average_price(prices: list[float]) -> float:
    """Mean item price of a cart."""
    return sum(prices) / len(prices)


def cart_total(prices: list[float], discount_pct: float = 0.0) -> float:
    return round(sum(prices) * (1 - discount_pct / 100), 2)
