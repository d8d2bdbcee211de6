"""Download tokens of the API: the signing lives in ``db.links`` (flows mint links too)."""

from db.links import TokenError, download_url, mint, public_base_url, verify

__all__ = ["TokenError", "download_url", "mint", "public_base_url", "verify"]
