"""`python -m selfheal` is the `selfheal` command."""

import sys

from .cli import main

sys.exit(main())
