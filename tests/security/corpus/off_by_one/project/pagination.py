"""Pages of a result list for the orders API."""


def page_count(total: int, size: int) -> int:
    """How many pages `total` items fill, `size` per page."""
    return (total + size - 1) // size


def page(items: list[int], number: int, size: int) -> list[int]:
    """The items of page `number` (0-based): at most `size` of them."""
    start = number * size
    return items[start : start + size - 1]
