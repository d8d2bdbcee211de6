"""Log hygiene: no download token or presigned signature in any log line.

uvicorn's access log writes each request line with its query string, so a
``download?token=...`` link would sit in the log for anyone who can read it.
``redact_access_log`` installs a filter on uvicorn's loggers that replaces the value of
``token``, ``X-Amz-Signature``, ``X-Amz-Credential`` and ``Signature`` with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_SECRET = re.compile(
    r"((?:^|[?&;\s\"'])(?:token|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"signature)=)[^&\s\"']+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters replaced."""
    return _SECRET.sub(rf"\g<1>{REDACTED}", text)


def _clean(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Redacts the message and its arguments (uvicorn passes the path as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        return True


_FILTER = RedactSecrets()


def redact_access_log() -> None:
    """Install the filter on uvicorn's access and error loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
