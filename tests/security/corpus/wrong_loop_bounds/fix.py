"""Rolling traffic figures for the metrics service."""


def moving_sums(values: list[int], width: int) -> list[int]:
    """The sum of every run of `width` consecutive values, in order."""
    sums = []
    for start in range(len(values) - width + 1):
        sums.append(sum(values[start : start + width]))
    return sums
