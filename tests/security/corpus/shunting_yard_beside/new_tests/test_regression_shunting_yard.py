from shunting_yard import shunting_yard


def test_multiplication_binds_tighter():
    assert shunting_yard([3, "+", 4, "*", 2]) == [3, 4, 2, "*", "+"]


def test_equal_precedence_is_left_associative():
    assert shunting_yard([1, "-", 2, "+", 3]) == [1, 2, "-", 3, "+"]
