"""User-facing errors: one line naming the problem and the fix; the CLI exits 2."""


class UserError(Exception):
    """A mistake the user can fix (bad file, bad flag, bad config); never a bug."""


class DataError(UserError):
    """A data file or data source that is missing, corrupt or of the wrong shape."""


class ConfigError(UserError):
    """A configuration value, preset or override that is not valid."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, unsafe or from an incompatible config."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the command stops, and the CLI exits with 128 + signum."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum
