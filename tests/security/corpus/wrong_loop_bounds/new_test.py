from window import moving_sums


def test_every_window_is_summed_including_the_last():
    assert moving_sums([1, 2, 3, 4], 2) == [3, 5, 7]
