"""Greatest common divisor (QuixBugs `gcd`: the recursive call swaps the wrong operands)."""


def gcd(a: int, b: int) -> int:
    if b == 0:
        return a
    return gcd(a % b, b)
