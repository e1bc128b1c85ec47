from cart import average_price, cart_total


def test_average_price():
    assert average_price([10.0, 20.0]) == 15.0


def test_average_price_of_empty_cart_is_zero():
    assert average_price([]) == 0.0


def test_cart_total_with_discount():
    assert cart_total([10.0, 10.0], discount_pct=10) == 18.0
