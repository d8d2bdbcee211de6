"""The one exception tree of exportflow.

``ExportError``
    ``InvalidRequest``   the caller's fault (unknown field, bad date, ...): 4xx, never retried.
    ``NotFound``         the export (or tenant) does not exist for this caller.
    ``TransientError``   the infrastructure hiccuped (lost connection, S3 5xx): retry with backoff.
    ``ValidationFailed`` the data broke the entity's expectations under the ``fail`` policy.
    ``TimedOut``         a run, statement or lock timeout was hit: the job ends EXPIRED.
    ``StopAttempt``      this attempt must stop writing (never retried):
        ``AttemptSuperseded``  another attempt owns the job now (the lease ran out);
        ``ExportCancelled``    the job was cancelled (or deleted).
Anything else fails the job with its message recorded.
"""

from __future__ import annotations

from typing import Any


class ExportError(Exception):
    """Base class: ``key`` is a stable machine-readable slug, ``details`` extra context."""

    key = "export_error"

    def __init__(self, message: str, *, key: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if key is not None:
            self.key = key
        self.details = details


class InvalidRequest(ExportError):
    """The request cannot be served as given; the message names the bad value."""

    key = "invalid_request"


class NotFound(ExportError):
    key = "not_found"


class TransientError(ExportError):
    key = "transient"


class ValidationFailed(ExportError):
    """Rows broke the entity's expectations; ``details`` lists the failed expectations."""

    key = "validation_failed"


class TimedOut(ExportError):
    """A limit was hit (run timeout, ``statement_timeout``, ``lock_timeout``); the message
    names it and the setting that raises it."""

    key = "timed_out"


class StopAttempt(ExportError):
    """The running attempt has lost the job: it writes nothing more and stops."""

    key = "stop_attempt"


class AttemptSuperseded(StopAttempt):
    key = "attempt_superseded"


class ExportCancelled(StopAttempt):
    key = "cancelled"
