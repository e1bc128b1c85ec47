from shipping import FLAT_RATE, shipping_cost


def test_a_small_order_pays_the_flat_rate():
    assert shipping_cost(10.0) == FLAT_RATE


def test_a_large_order_ships_free():
    assert shipping_cost(80.0) == 0.0
