"""One exception tree for carelink, and the exit code of each kind of failure.

The CLI maps every ``CarelinkError`` to a one-line message and its ``exit_code``; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path

#: Exit codes, defined once (documented in the README).
EXIT_OK = 0
EXIT_DATA_QUALITY = 1  # a data-quality gate failed (leak scan, reconciliation, blocking budget, ...)
EXIT_USAGE = 2  # bad command line or configuration
EXIT_INPUT = 3  # an input file cannot be read as declared
EXIT_KEY = 4  # a key file is missing, unreadable, tampered with, or opened with the wrong passphrase
EXIT_LOCKED = 5  # another run holds the workspace lock
EXIT_INTEGRITY = 6  # inputs disagree with their manifests or were made with different keys


class CarelinkError(Exception):
    """Base of every error carelink reports to a user."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple:
        # Rebuilt from the message whatever the subclass's arguments, so an error crosses a process boundary.
        return _rebuild, (type(self), self.message)


def _rebuild(kind: type[CarelinkError], message: str) -> CarelinkError:
    error = kind.__new__(kind)
    CarelinkError.__init__(error, message)
    return error


class ConfigError(CarelinkError):
    """A configuration file or command-line value is wrong; names the file and the key."""

    exit_code = EXIT_USAGE

    def __init__(self, path: Path | str | None, key: str | None, problem: str):
        where = str(path) if path else "configuration"
        if key:
            where += f": {key}"
        super().__init__(f"{where}: {problem}")


class InputFileError(CarelinkError):
    """An input file cannot be read as declared; names the file, and the row and field where known."""

    exit_code = EXIT_INPUT

    def __init__(self, path: Path | str, problem: str, row: int | None = None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")


class DataQualityError(CarelinkError):
    """A data-quality gate failed: the run stops before anything is published."""

    exit_code = EXIT_DATA_QUALITY


class KeyFileError(CarelinkError):
    """A key file is missing, unreadable, too open, tampered with, or the passphrase is wrong."""

    exit_code = EXIT_KEY


class WorkspaceLockedError(CarelinkError):
    """Another run holds the workspace lock."""

    exit_code = EXIT_LOCKED


class IntegrityError(CarelinkError):
    """Inputs do not match their manifests, or were made with different keys."""

    exit_code = EXIT_INTEGRITY
