"""Errors that reach the user, each with the exit code the CLI gives it."""

from __future__ import annotations


class ScholaError(Exception):
    """Base of every error Schola reports to the user without a traceback."""

    exit_code = 1


class ConfigError(ScholaError):
    """A configuration, graph, plugin or data-file problem found before or during a run.

    Args:
        message: what is wrong and what was expected.
        file: the file the key came from, where known.
        key: the dotted config key, where known.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file, self.key, self.detail = file, key, message
        where = ", ".join(p for p in (file, f"key '{key}'" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)


class PluginError(ScholaError):
    """A plugin's own code raised (a role's `act`, a scorer, a stage): a bug in the plugin, not in the
    configuration, so the message names the plugin rather than the step's arguments (which `check` verified
    with `signature.bind`). The cause stays attached for `--debug`.

    Args:
        message: what raised, where, and the cause.
        plugin: the plugin's code, as `module:qualname`.
    """

    exit_code = 1

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin


class BackendError(ScholaError):
    """A model endpoint failed for good (unreachable, refused, or out of retries)."""

    exit_code = 3


class NoLogprobs(BackendError):
    """The endpoint answers but gives no token log-probabilities: option probabilities are then estimated from
    samples."""


class ContextOverflow(BackendError):
    """The prompt does not fit the model's context window."""


class TransientBackendError(BackendError):
    """A failure worth retrying (429, 5xx, timeout, reset); `retry_after` in seconds when the server said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceeded(ScholaError):
    """A `budget.*` limit was reached; the run stops cleanly and can be resumed with a larger budget.

    Args:
        message: which limit, and how much was used.
        key: the budget key to raise (`budget.max_requests`).
    """

    exit_code = 4

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
