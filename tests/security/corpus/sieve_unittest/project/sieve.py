"""Primes up to a bound (QuixBugs `sieve`: `any` where `all` is meant)."""


def sieve(limit: int) -> list[int]:
    primes: list[int] = []
    for n in range(2, limit + 1):
        if any(n % p > 0 for p in primes):
            primes.append(n)
    return primes
