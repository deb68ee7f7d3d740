"""The command line interface."""

from lecun1989.cli.main import main

__all__ = ["main"]
