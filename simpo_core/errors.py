"""User-facing errors: each message says what was wrong and how to fix it."""


class SimpoError(Exception):
    """An error caused by input or configuration that the user can fix.

    The CLI prints the message (no traceback) and exits non-zero.
    """


class DataError(SimpoError):
    """Preference data that cannot be read or used as given."""


class ConfigError(SimpoError):
    """A configuration value that is missing, unknown or out of range."""
