"""Serving a finished export: 303 to a presigned S3 URL, or the local file with HTTP Range."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from api import tokens
from api.auth import ApiKey
from api.errors import ApiError, not_found
from api.origin import origin
from core.errors import NotFound
from core.settings import Settings
from db import audit, jobs
from storage import Stored
from storage.blocks import storage_for_record

CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def serve_download(
    request: Request,
    engine: sa.Engine,
    settings: Settings,
    export_id: str,
    token: str,
    caller: ApiKey | None,
) -> Response:
    """The file of a DONE export for a valid token (404 for anything that does not match)."""
    try:
        job = jobs.get_job(engine, export_id)
    except NotFound:
        raise not_found(export_id) from None
    if caller is not None and caller.tenant != job.tenant:
        raise not_found(export_id)
    try:
        tokens.verify(engine, str(job.id), token)
    except tokens.TokenError as exc:
        if "expired" in str(exc):
            raise ApiError(410, "link_expired", str(exc)) from None
        raise not_found(export_id) from None
    if job.status == "EXPIRED":
        raise ApiError(
            410,
            "export_expired",
            f"export {job.id} has expired and its file was deleted"
            + (f" ({job.error})" if job.error else "")
            + "; run the export again",
        )
    if job.status != "DONE" or not job.result:
        raise ApiError(409, "export_not_ready", f"export {job.id} is {job.status}, not DONE")
    if job.expires_at is not None and job.expires_at <= datetime.now(UTC):
        raise ApiError(410, "export_expired", f"export {job.id} expired at {job.expires_at}")
    result = job.result
    stored = Stored.from_result(result)
    filename = Path(stored.key).name
    disposition = f'attachment; filename="{filename}"'
    content_type = _negotiate(
        str(result.get("content_type") or "application/octet-stream"),
        request.headers.get("accept", ""),
    )
    storage = storage_for_record(stored, settings)
    if request.method == "GET":
        audit.record(
            engine,
            "download",
            job.tenant,
            origin(request, caller),
            job.id,
            {"range": request.headers.get("range"), "storage": stored.storage},
        )
    url = storage.presign(stored, settings.download_url_ttl_s, filename, content_type)
    if url is not None:
        return RedirectResponse(url, status_code=303)
    path = storage.local_path(stored)
    if path is None or not path.is_file():
        raise ApiError(404, "file_not_found", f"the file of export {job.id} is gone")
    return _file_response(request, path, result, disposition, content_type)


def _negotiate(content_type: str, accept: str) -> str:
    """Text files as ``text/plain`` to clients that accept only that (Voucherify's SDKs)."""
    base = content_type.split(";")[0].strip()
    textual = base.startswith("text/") or base in ("application/json", "application/x-ndjson")
    wanted = {a.split(";")[0].strip() for a in accept.split(",") if a.strip()}
    if textual and "text/plain" in wanted and not wanted & {base, "*/*", "text/*"}:
        return "text/plain; charset=utf-8"
    return content_type


def _file_response(
    request: Request, path: Path, result: dict[str, Any], disposition: str, content_type: str
) -> Response:
    size = path.stat().st_size
    etag = f'"{result.get("sha256") or size}"'
    headers = {
        "Content-Disposition": disposition,
        "Accept-Ranges": "bytes",
        "ETag": etag,
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    start, end = 0, size - 1
    status = 200
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted and "," not in wanted and (if_range is None or if_range == etag):
        span = _parse_range(wanted, size)
        if span is None:
            raise ApiError(
                416,
                "range_not_satisfiable",
                f"range {wanted!r} is outside the file ({size} bytes)",
                headers={"Content-Range": f"bytes */{size}"},
            )
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        _read(path, start, end), status_code=status, headers=headers, media_type=content_type
    )


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range, clipped to the file; None if unsatisfiable."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or size == 0:
        return None
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return None
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def _read(path: Path, start: int, end: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
