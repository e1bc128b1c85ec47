from stats.center import mean
from stats.spread import variance


def test_mean_of_an_even_sum():
    assert mean([2, 4]) == 3


def test_a_constant_sample_does_not_spread():
    assert variance([2, 2, 2]) == 0
