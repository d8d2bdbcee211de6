"""Voucherify-style errors: every 4xx body is ``{code, key, message, details}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ExportError, InvalidRequest, NotFound


class ErrorBody(BaseModel):
    """The error object (as Voucherify's): HTTP code, stable key, message, details."""

    code: int = Field(description="HTTP status code.")
    key: str = Field(description="Stable machine-readable slug, e.g. `not_found`.")
    message: str = Field(description="What went wrong and what to do about it.")
    details: Any = Field(None, description="Extra context (allowed values, field errors).")


class ApiError(Exception):
    """Raised by routes and dependencies; rendered as an ``ErrorBody``."""

    def __init__(
        self,
        code: int,
        key: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.key, self.message, self.details = code, key, message, details
        self.headers = headers


def not_found(export_id: object) -> ApiError:
    return ApiError(404, "not_found", f"export {export_id} not found")


def _body(code: int, key: str, message: str, details: Any = None) -> dict[str, Any]:
    return ErrorBody(code=code, key=key, message=message, details=details).model_dump()


_STATUS_KEYS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "unprocessable",
    429: "too_many_requests",
}


def install(app: FastAPI) -> None:
    """Render every error the app can raise as an ``ErrorBody``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            _body(exc.code, exc.key, exc.message, exc.details), exc.code, headers=exc.headers
        )

    @app.exception_handler(ExportError)
    async def export_error(request: Request, exc: ExportError) -> JSONResponse:
        code = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, InvalidRequest) else 409
        return JSONResponse(_body(code, exc.key, exc.message, exc.details), code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['location']}: {d['message']}" for d in details)
        return JSONResponse(_body(400, "invalid_payload", message, details), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        key = _STATUS_KEYS.get(exc.status_code, "error")
        return JSONResponse(
            _body(exc.status_code, key, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error bodies of an endpoint."""
    text = {
        400: "Invalid request: unknown object, field, filter, operator, page size, ...",
        401: "Missing or wrong X-App-Id / X-App-Token.",
        403: "The API key lacks the scope this endpoint needs.",
        404: "No such export for this tenant (other tenants' exports are never visible).",
        409: "The export is not in a state that allows this.",
        410: "The export (or this download link) has expired; its file is deleted.",
        416: "The requested byte range is outside the file.",
        422: "Idempotency-Key reused with a different body.",
        429: "Rate limit reached; retry after `Retry-After` seconds.",
        503: "A service behind the API (Prefect, storage) did not do it; retry later.",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}
