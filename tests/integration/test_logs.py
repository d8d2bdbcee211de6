"""Log hygiene: after downloads (local file and S3 redirect) the API's access log, created
owner-only, holds no download token and no presigned signature."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_api import create, wait_finished


def test_access_log_redacts_tokens_and_signatures_and_is_owner_only(
    api_url: str,
    api_keys: dict[str, dict[str, str]],
    s3: tuple[str, Any],
    database_url: str,
    tmp_path: Path,
) -> None:
    from devtools.procs import free_port, start_group, stop_group, wait_http

    with httpx.Client(base_url=api_url, timeout=60) as client:
        created = create(client, api_keys["acme"], parameters={"fields": ["code"]})
        s3_export = wait_finished(client, created.json()["id"], api_keys["acme"])
    assert s3_export["status"] == "DONE"
    from core.settings import get_settings

    os.environ.pop("EXPORTFLOW_S3_BUCKET")  # the next export goes to local storage
    get_settings.cache_clear()
    with httpx.Client(base_url=api_url, timeout=60) as client:
        created = create(client, api_keys["acme"], parameters={"fields": ["code", "value"]})
        local_export = wait_finished(client, created.json()["id"], api_keys["acme"])
    assert local_export["status"] == "DONE"

    port = free_port()
    log = tmp_path / "logs" / "api.log"
    env = {
        **os.environ,
        "EXPORTFLOW_DATABASE_URL": database_url,
        "EXPORTFLOW_LAUNCHER": "deployment",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    process = start_group(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "exportflow.web:main_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "info",
        ],
        env,
        log,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 120, lambda: process.poll() is None)
        secrets = []
        for export in (s3_export, local_export):
            url = export["result"]["url"].replace(api_url, f"http://127.0.0.1:{port}")
            secrets.append(url.split("token=")[1])
            response = httpx.get(url, timeout=60)
            if response.status_code == 303:
                location = response.headers["location"]
                secrets.append(re.search(r"X-Amz-Signature=([0-9a-f]+)", location).group(1))
                assert httpx.get(location).status_code == 200
            else:
                assert response.status_code == 200
            httpx.head(url, timeout=60)
            httpx.get(url.split("?")[0], params={"token": "forged"}, timeout=60)
    finally:
        stop_group(process.pid)
    text = log.read_text()
    assert "/download?token=[redacted]" in text  # the requests were logged, redacted
    for secret in secrets:
        assert secret not in text
    assert "X-Amz-Signature=" not in text.replace("X-Amz-Signature=[redacted]", "")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_redaction_covers_every_secret_parameter() -> None:
    from api.logs import redact

    line = (
        '127.0.0.1:5 - "GET /v1/exports/1/download?token=abc.def-ghi&x=1 HTTP/1.1" 200 '
        "https://s3/x?X-Amz-Credential=AK%2F1&X-Amz-Signature=deadbeef&Signature=zz"
    )
    out = redact(line)
    for secret in ("abc.def-ghi", "deadbeef", "AK%2F1", "=zz"):
        assert secret not in out
    assert "x=1" in out
