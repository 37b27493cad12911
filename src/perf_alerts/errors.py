"""The one error hierarchy of perf-alerts: what front ends catch and how they show it.

Every error perf-alerts raises on purpose derives from `PerfAlertsError`; its `str()` is a
message for a person (it names the bad value and what would be valid), never a traceback.
Front ends map the classes, not the messages. The contract:

- every `PerfAlertsError`: the CLI prints `str(e)` on one stderr line and exits 2; the crew
  tool returns a failed StepResult with `str(e)`; the HTTP API answers `{"error": str(e)}`
  with the status of the class:
- `InputError` (400): bad user input: a sample, timestamp, duration, label filter, silence,
  condition;
- `NotFoundError` (404): no such alert, silence, ...;
- `ConflictError` (409): valid, but the current state forbids it;
- `StoreError` (503): the store cannot be used;
- `DeliveryError` (502): a receiver could not be reached;
- `ConfigError` and `DaemonError`: the operator must fix the configuration or the start-up
  (at start-up, before any request; `check-config` lists every problem of a ConfigError).

Any other exception escaping a front end is a bug: the CLI shows the traceback, the HTTP
API answers 500 without details, the crew tool reports an internal error.

Subclasses that existed before this module keep their old built-in bases too
(`SampleError` is still a `ValueError`, `AlertNotFound` a `LookupError`), so code that
catches those keeps working. This module is the bottom layer: it imports nothing from
perf_alerts, so every other module can use it.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConflictError",
    "DaemonError",
    "DeliveryError",
    "InputError",
    "NotFoundError",
    "PerfAlertsError",
    "StoreError",
    "StoreUnavailable",
]


class PerfAlertsError(Exception):
    """Base of every error perf-alerts raises on purpose.

    Front ends catch it (and its subclasses, see the module docstring) and show `str(e)`
    as the whole answer: the CLI on one stderr line with exit code 2, the HTTP API as
    `{"error": str(e)}` with the class's status, the crew tool as a failed StepResult.
    """


class InputError(PerfAlertsError, ValueError):
    """Bad user input: a sample, a timestamp, a duration, a label filter, a silence, a condition."""


class NotFoundError(PerfAlertsError, LookupError):
    """The thing asked for does not exist (an alert fingerprint, a silence id, ...)."""


class ConflictError(PerfAlertsError):
    """A valid request that the current state forbids (acknowledging a resolved alert, ...)."""


class ConfigError(PerfAlertsError):
    """A configuration problem; `str()` is the one-line (or few-line) message for the user.

    `problems` lists every problem found (one `file:line: message` each), so
    `check-config` can show them all while other front ends show the first.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class StoreError(PerfAlertsError):
    """The store cannot be used (missing directory, not a database, no permission, a bad URL)."""


class StoreUnavailable(StoreError):
    """The store's server cannot be reached (PostgreSQL down, refused, wrong password), after retries.

    The message names the host and database, never the password."""


class DeliveryError(PerfAlertsError):
    """A receiver could not be reached or refused a notification (after its retries)."""


class DaemonError(PerfAlertsError):
    """A start-up problem of the daemon the operator must fix (bad bind, port in use)."""
