from stats.center import mean
from stats.spread import variance


def test_mean_keeps_the_fraction():
    assert mean([1, 2]) == 1.5


def test_variance_keeps_the_fraction():
    assert variance([1, 2]) == 0.25
