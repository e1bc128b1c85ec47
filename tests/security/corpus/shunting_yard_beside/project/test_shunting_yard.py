from shunting_yard import shunting_yard


def test_no_tokens():
    assert shunting_yard([]) == []


def test_a_single_number():
    assert shunting_yard([10]) == [10]
