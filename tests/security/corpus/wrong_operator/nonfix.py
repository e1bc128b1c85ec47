"""Shipping charges for the checkout service."""

FREE_SHIPPING_FROM = 50.0
FLAT_RATE = 4.99


def shipping_cost(subtotal: float) -> float:
    """Orders of 50.00 or more ship free; below that shipping is a flat rate."""
    if round(subtotal, 2) > round(FREE_SHIPPING_FROM, 2):
        return 0.0
    return FLAT_RATE
