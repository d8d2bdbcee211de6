"""``/v1/exports/{id}/download?token=``: the file of a finished export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.deps import EngineDep, OptionalCallerDep, SettingsDep
from api.download import serve_download
from api.errors import responses

router = APIRouter(prefix="/v1/exports", tags=["exports"])


@router.head("/{export_id}/download", include_in_schema=False, response_class=Response)
@router.get(
    "/{export_id}/download",
    summary="Download export",
    response_class=Response,
    responses={
        **responses(401, 404, 409, 410, 416),
        200: {"description": "The whole file.", "content": {"application/octet-stream": {}}},
        206: {"description": "The requested byte range (`Range: bytes=a-b`)."},
        303: {"description": "Redirect to a presigned S3 URL (files stored in S3)."},
    },
)
def download_export(
    export_id: str,
    request: Request,
    caller: OptionalCallerDep,
    engine: EngineDep,
    settings: SettingsDep,
    token: Annotated[str, Query(description="The export's download token (in result.url).")],
) -> Response:
    """The file: needs only the token; API key headers, if sent, must be the same tenant's."""
    return serve_download(request, engine, settings, export_id, token, caller)
