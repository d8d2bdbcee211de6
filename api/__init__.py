"""The exports REST API (Voucherify-compatible): ``create_app()`` builds the FastAPI app.

Modules: ``errors`` (the error body and the one exception the routes raise), ``auth`` (API
keys, hashed; tenant + scopes), ``ratelimit`` (per-key counters in PostgreSQL),
``idempotency``, ``tokens`` (download tokens), ``launcher`` (how an export's flow is started),
``schemas`` (wire objects), ``routes/`` (one module per concern). Nothing here imports the
flows (and so Great Expectations) except the in-process thread launcher, lazily.
"""

from __future__ import annotations

from api.app import create_app

__all__ = ["create_app"]
