from mathx import gcd, lcm


def test_gcd_of_two_multiples_of_seven():
    assert gcd(35, 21) == 7


def test_lcm_is_built_on_gcd():
    assert lcm(4, 6) == 12
