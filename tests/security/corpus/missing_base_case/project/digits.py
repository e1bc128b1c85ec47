"""Check digits for the invoicing service."""


def digit_sum(n: int) -> int:
    """Sum of the decimal digits of a non-negative integer."""
    return n % 10 + digit_sum(n // 10)


def check_digit(n: int) -> int:
    return digit_sum(n) % 10
