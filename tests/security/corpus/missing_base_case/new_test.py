from digits import digit_sum


def test_digit_sum_of_zero_and_of_one_digit():
    assert digit_sum(0) == 0
    assert digit_sum(7) == 7
