from pagination import page


def test_a_full_page_has_size_items():
    assert page(list(range(10)), 1, 3) == [3, 4, 5]
