"""`python -m lecun1989`."""

from lecun1989.cli.main import entry

entry()
