from digits import check_digit, digit_sum


def test_digit_sum_of_a_number():
    assert digit_sum(1234) == 10


def test_check_digit():
    assert check_digit(987) == 4
