from mathx import gcd


def test_gcd_with_zero_is_the_other_number():
    assert gcd(7, 0) == 7
    assert gcd(0, 0) == 0
