import unittest

from sieve import sieve


class SieveTest(unittest.TestCase):
    def test_no_primes_below_two(self):
        self.assertEqual(sieve(1), [])

    def test_the_result_is_sorted(self):
        result = sieve(30)
        self.assertEqual(result, sorted(result))


if __name__ == "__main__":
    unittest.main()
