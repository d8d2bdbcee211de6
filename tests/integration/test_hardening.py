"""Hostile input: every request of the issue is refused with a 4xx naming the problem and
leaves nothing behind (no job row, no flow run); no request gives a 5xx (property-based)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from query.filters import ALL_OPERATORS


@pytest.fixture
def client(api_url: str) -> httpx.Client:
    with httpx.Client(base_url=api_url, timeout=60) as c:
        yield c


def _post(client: httpx.Client, headers: dict[str, str], body: Any) -> httpx.Response:
    """POST raw JSON (ASCII-escaped, so lone surrogates travel as JSON allows)."""
    return client.post(
        "/v1/exports",
        content=json.dumps(body).encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


def _filter(field: str, op: str, value: Any) -> dict[str, Any]:
    return {"filters": {field: {"conditions": {op: value}}}}


HOSTILE = [
    ("voucher", _filter("redemption_count", "$more_than", 99999999999999999999999), "between"),
    ("redemption", _filter("order_amount", "$more_than", 99999999999999999999999), "order_amount"),
    ("voucher", _filter("created_at", "$after", "-P999999999999D"), "duration"),
    ("voucher", _filter("code", "$is", "\ud800"), "surrogate"),
    ("voucher", _filter("code", "$is", "x" * 5_000_000), "too large"),
    ("voucher", _filter("value", "$more_than", "1e999999999"), "value"),
    ("voucher", _filter("code", "$is", "a\x00b"), "nul"),
    ("voucher", {"title": "x\ny"}, "title"),
    ("voucher", {"expires_in": 10**30}, "expires_in"),
]


@pytest.mark.parametrize(("exported_object", "parameters", "mention"), HOSTILE)
def test_hostile_inputs_are_refused_with_4xx_and_nothing_is_stored(
    client: httpx.Client,
    api_keys: dict[str, dict[str, str]],
    api_launcher: Any,
    pg: psycopg.Connection,
    exported_object: str,
    parameters: dict[str, Any],
    mention: str,
) -> None:
    (jobs_before,) = pg.execute("SELECT count(*) FROM export_jobs").fetchone()
    launched = len(api_launcher.launched)
    response = _post(
        client, api_keys["demo"], {"exported_object": exported_object, "parameters": parameters}
    )
    assert 400 <= response.status_code < 500, response.text[:500]
    body = response.json()
    assert set(body) == {"code", "key", "message", "details"}
    assert mention in body["message"].lower(), body["message"][:500]
    assert len(response.content) < 10_000  # the 5 MB value is not echoed back
    (jobs_after,) = pg.execute("SELECT count(*) FROM export_jobs").fetchone()
    assert jobs_after == jobs_before and len(api_launcher.launched) == launched


def test_a_tenant_name_ending_in_a_newline_is_refused(exports: None, engine: Any) -> None:
    from api.auth import create_key
    from core.errors import InvalidRequest
    from flows.exports import FLOWS

    with pytest.raises(InvalidRequest, match="invalid tenant"):
        create_key(engine, "demo\n")
    with pytest.raises(InvalidRequest, match="invalid tenant"):
        FLOWS["voucher"](tenant="demo\n", parameters={"fields": ["code"]})


def test_a_launch_failure_answers_503_without_internal_details(
    engine: Any, api_keys: dict[str, dict[str, str]], pg: psycopg.Connection
) -> None:
    from fastapi.testclient import TestClient

    from api import create_app

    class DownLauncher:
        def launch(self, entity: Any, job: Any) -> None:
            raise RuntimeError(
                "Failed to reach API at http://127.0.0.1:4200/api/: psycopg.OperationalError"
                " connection to server at 10.0.0.7 port 5432 failed"
            )

        def cancel(self, job: Any) -> None:
            pass

    with TestClient(create_app(engine, DownLauncher())) as down:
        response = down.post(
            "/v1/exports",
            json={"exported_object": "voucher", "parameters": {"fields": ["code", "value"]}},
            headers=api_keys["demo"],
        )
        assert response.status_code == 503 and response.json()["key"] == "launch_failed"
        export_id = pg.execute(
            "SELECT id FROM export_jobs WHERE error LIKE 'could not start%%'"
            " ORDER BY created_at DESC LIMIT 1"
        ).fetchone()[0]
        shown = down.get(f"/v1/exports/{export_id}", headers=api_keys["demo"])
    for text in (response.text, shown.text):
        for secret in ("4200", "10.0.0.7", "psycopg", "http://"):
            assert secret not in text


# --- property-based: no request gives a 5xx ---------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["\ud800", "a\x00", "-P99999999999D", "1e999999", "2026-01-01", "-P1D"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.sampled_from(
    [
        "code",
        "value",
        "created_at",
        "campaign_ids",
        "metadata.region",
        "customer_ids",
        "nope",
        "active",
        "redemption_count",
        "expiration_date",
    ]
)
_ops = st.sampled_from([*ALL_OPERATORS, "$bogus"])  # every operator, and one unknown
_filters = st.dictionaries(
    _fields,
    st.fixed_dictionaries({"conditions": st.dictionaries(_ops, _json, min_size=1, max_size=2)}),
    max_size=3,
)
_parameters = st.fixed_dictionaries(
    {},
    optional={
        "fields": st.lists(_fields, max_size=4) | _json,
        "order": st.sampled_from(["code", "-created_at", "-nope", ""]) | _json,
        "filters": _filters | _json,
        "format": st.sampled_from(["csv", "xlsx", "pdf", "docx"]) | _json,
        "compression": st.sampled_from(["gzip", "zstd", "rar"]) | _json,
        "partition_by": _fields | _json,
        "title": st.text(max_size=20) | _json,
        "expires_in": st.integers(min_value=-(10**20), max_value=10**20) | _json,
        "unknown": _json,
    },
)
_bodies = (
    st.fixed_dictionaries(
        {"exported_object": st.sampled_from(["voucher", "order", "customer", "spaceship"]) | _json},
        optional={"parameters": _parameters | _json},
    )
    | _json
)


class _NoLauncher:
    """Accepts launches without running anything (valid random requests stay SCHEDULED)."""

    def launch(self, entity: Any, job: Any) -> None:
        return None

    def cancel(self, job: Any) -> None:
        return None


@pytest.fixture(scope="module")
def fuzz_client(engine: Any) -> Any:
    from fastapi.testclient import TestClient

    from api import create_app
    from api.auth import create_key

    app_id, token = create_key(engine, "fuzz", rate_limit=1_000_000)
    with TestClient(create_app(engine, _NoLauncher())) as test_client:
        test_client.headers.update({"X-App-Id": app_id, "X-App-Token": token})
        yield test_client


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_bodies)
def test_no_export_request_gives_a_5xx(fuzz_client: Any, body: Any) -> None:
    response = fuzz_client.post(
        "/v1/exports",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code < 500, (body, response.text[:300])
    if response.status_code >= 400:
        assert response.json()["key"], response.text


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(
        [
            "/v1/exports",
            "/v1/exports/{x}",
            "/v1/exports/{x}/download",
            "/v1/audit",
            "/v1/requesters/{x}/exports",
            "/v1/customers/{x}/exports",
        ]
    ),
    method=st.sampled_from(["GET", "DELETE", "HEAD"]),
    x=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and s not in (".", "..")),
    query=st.dictionaries(
        st.sampled_from(
            ["limit", "page", "status", "order", "exported_object", "token", "action", "export_id"]
        ),
        st.text(max_size=30) | st.integers(-(10**20), 10**20).map(str),
        max_size=3,
    ),
)
def test_no_read_or_delete_gives_a_5xx(
    fuzz_client: Any, path: str, method: str, x: str, query: dict[str, str]
) -> None:
    from urllib.parse import quote

    url = path.replace("{x}", quote(x, safe=""))
    response = fuzz_client.request(method, url, params=query)
    assert response.status_code < 500, (method, url, query, response.text[:300])


def test_fuzzing_stored_only_validated_parameters(pg: psycopg.Connection) -> None:
    """Whatever the fuzzing stored (valid requests only) is plain, bounded JSON."""
    rows = pg.execute(
        "SELECT length(parameters::text), parameters::text FROM export_jobs WHERE tenant = 'fuzz'"
    ).fetchall()
    for size, text in rows:
        assert size < 64 * 1024
        assert "\\u0000" not in text
