import unittest

from sieve import sieve


class SieveRegressionTest(unittest.TestCase):
    def test_primes_up_to_ten(self):
        self.assertEqual(sieve(10), [2, 3, 5, 7])

    def test_a_prime_bound_is_included(self):
        self.assertEqual(sieve(13)[-1], 13)
