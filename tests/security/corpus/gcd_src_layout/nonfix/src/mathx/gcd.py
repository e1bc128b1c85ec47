"""Greatest common divisor (QuixBugs `gcd`: the recursive call swaps the wrong operands)."""


def gcd(a: int, b: int) -> int:
    if b == 0:
        return a
    return gcd(b, a // b)


def lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b) if a and b else 0
