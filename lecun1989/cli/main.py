"""The `lecun1989` command line. Each command lives in its own module of this package.

User mistakes print one line on stderr and exit with status 2; no traceback.

SIGINT and SIGTERM, from main's first line to its last, print one line and exit with 130 or
143 (128 + the signal), no traceback. The handlers go in before the commands are imported
(importing torch takes seconds), so this module imports nothing heavy. While a run trains,
the training loop installs its own handlers (train/loop.py `_StopSignals`: a checkpoint,
then `RunInterrupted` with its message) and puts these back when it ends.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from lecun1989.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The command modules of lecun1989.cli, each with add_parsers(sub), in --help's order.
COMMANDS = ("run", "evaluate", "info", "config", "sweep", "plot", "report", "predict", "demo")


def _interrupt(signum, frame) -> None:
    raise Interrupted(signum)


def help_formatter():
    """argparse's formatter that shows each option's default, unless its help says it."""
    import argparse

    class Formatter(argparse.ArgumentDefaultsHelpFormatter):
        def _get_help_string(self, action):
            text = action.help or ""
            return text if "(default" in text else super()._get_help_string(action)

    return Formatter


def build_parser():
    """The CLI's argument parser (imports every command module)."""
    import argparse
    import importlib

    class Parser(argparse.ArgumentParser):
        """argparse that reports usage mistakes in one line."""

        def error(self, message):
            raise UserError(f"{message} (see `{self.prog} --help`)")

    parser = Parser(prog="lecun1989",
                    description="LeCun et al. 1989, reproduced: train, evaluate, inspect. "
                                "`lecun1989 COMMAND --help` describes each command.",
                    formatter_class=help_formatter())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                metavar="COMMAND", title="commands")
    for name in COMMANDS:
        importlib.import_module(f"lecun1989.cli.{name}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lecun1989` command: its exit status (0, 2, 130 or 143)."""
    return _run(argv, after=None)


def entry() -> None:
    """The console command and `python -m lecun1989`: exit with main's status. Signals are
    ignored once the command is over (Python is shutting down; the outcome is decided)."""
    sys.exit(_run(None, after=signal.SIG_IGN))


def _run(argv: list[str] | None, after) -> int:
    """main; SIGINT/SIGTERM handled throughout, then set to `after` (None: as they were)."""
    old: dict = {}
    try:
        try:
            if threading.current_thread() is threading.main_thread():
                for s in SIGNALS:  # inside the try: a signal from here on is handled
                    old[s] = signal.signal(s, _interrupt)
            args = build_parser().parse_args(argv)
            return args.func(args)
        except UserError as e:
            print(f"lecun1989: error: {' '.join(str(e).split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        except BrokenPipeError:  # `lecun1989 config | head`: the reader has gone; so do we
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error while Python flushes
            return 128 + signal.SIGPIPE
    except KeyboardInterrupt as e:  # Interrupted, the loop's RunInterrupted, a 2nd Ctrl-C
        signum = getattr(e, "signum", signal.SIGINT)
        said = str(e) if hasattr(e, "signum") and not isinstance(e, Interrupted) else ""
        print(f"lecun1989: {' '.join(said.split()) or 'interrupted'}", file=sys.stderr)
        return 128 + signum
    finally:
        for s, handler in old.items():
            restored = handler if after is None else after
            signal.signal(s, signal.SIG_DFL if restored is None else restored)


if __name__ == "__main__":
    entry()
