from pagination import page, page_count


def test_page_count_rounds_up():
    assert page_count(10, 3) == 4
    assert page_count(9, 3) == 3


def test_a_page_beyond_the_end_is_empty():
    assert page([1, 2, 3], 5, 2) == []
