"""`python -m lecun1989`."""

import sys

from lecun1989.cli.main import main

sys.exit(main())
