"""``/docs`` and ``/redoc`` work without internet: every asset is served by the app itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    """The API over real HTTP (uvicorn in a thread); nothing else is reachable from the page."""
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(
        r"""url:\s*['"]([^'"]+)['"]""", html
    )


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_load_only_local_assets(client: httpx.Client, page: str, script: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    urls = _asset_urls(response.text)
    assert any(u.endswith(script) for u in urls), urls
    assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls  # nothing off-box
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert len(asset.content) > 100_000  # the real bundle, not a stub
    assert "fonts.googleapis" not in response.text


def test_swagger_ui_bundle_is_the_real_swagger_ui(client: httpx.Client) -> None:
    body = client.get("/docs-assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in body
    css = client.get("/docs-assets/swagger-ui.css")
    assert css.status_code == 200 and ".swagger-ui" in css.text


def test_openapi_declares_the_two_key_headers_for_the_authorize_button(
    client: httpx.Client,
) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["AppId"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-App-Id",
        "description": schemes["AppId"]["description"],
    }
    assert schemes["AppToken"]["name"] == "X-App-Token" and schemes["AppToken"]["in"] == "header"
    create = spec["paths"]["/v1/exports"]["post"]
    assert {"AppId": []} in create["security"] and {"AppToken": []} in create["security"]
