from shipping import shipping_cost


def test_an_order_of_exactly_fifty_ships_free():
    assert shipping_cost(50.0) == 0.0
