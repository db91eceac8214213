"""One exception hierarchy. A MinewatchError is a user-facing problem: the CLI prints
its one-line message (file and position included) and carries on with other inputs."""


class MinewatchError(Exception):
    """Base of every error minewatch reports to a user instead of a traceback."""


class InputError(MinewatchError):
    """An input file is missing, unreadable, of the wrong kind, or corrupt."""

    def __init__(self, path, reason: str, position: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.position = position
        where = f"{self.path}:{position}" if position else self.path
        super().__init__(f"{where}: {reason}")


class UsageError(MinewatchError):
    """A command-line option or setting is wrong."""
