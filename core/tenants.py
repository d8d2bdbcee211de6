"""The tenant check: a tenant names a storage folder, so only safe names pass."""

from __future__ import annotations

import re

from core.errors import InvalidRequest

TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")


def check_tenant(tenant: object) -> str:
    """1-63 letters, digits, ``_ . -`` (starting with a letter or digit), no ``..``."""
    if not isinstance(tenant, str) or not TENANT.match(tenant) or ".." in tenant:
        raise InvalidRequest(
            f"invalid tenant {str(tenant)[:80]!r}: use 1-63 letters, digits, '_', '.', '-'",
            key="invalid_tenant",
        )
    return tenant
