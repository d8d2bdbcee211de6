"""Request validation without any service: each bad request is refused naming the problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.errors import InvalidRequest
from core.params import ExportParameters
from entities import ENTITIES
from query.plan import plan_export
from query.sql import copy_sql

VOUCHER = ENTITIES["voucher"]


@pytest.mark.parametrize(
    ("tenant", "params", "message"),
    [
        ("demo", {"order": "-secret"}, "cannot order voucher exports by '-secret'"),
        (
            "demo",
            {"filters": {"created_at": {"conditions": {"$after": "last tuesday"}}}},
            "'last tuesday'",
        ),
        ("demo", {"filters": {"code": {"conditions": {"$regex": ".*"}}}}, "'$regex' is unknown"),
        ("demo", {"filters": {"campaign_ids": {"conditions": {"$in": []}}}}, "non-empty list"),
        ("demo", {"filters": {"nope": {"conditions": {"$is": "x"}}}}, "cannot filter voucher"),
        ("demo", {"fields": ["code", "code"]}, "listed twice"),
        ("demo", {"fields": ["code", "secret_column"]}, "unknown field 'secret_column'"),
        ("demo", {"format": "xls"}, "unknown format 'xls'; allowed: csv, json"),
        ("demo", {"format": "xlsx", "compression": "gzip"}, "not available for xlsx"),
        ("demo", {"title": "bad\x07title"}, "title"),
        ("demo", {"colour": "red"}, "unknown parameter; allowed: fields, order"),
        ("../etc", {}, "invalid tenant"),
        ("acme\n", {}, "invalid tenant"),
        (
            "demo",
            {"filters": {"redemption_count": {"conditions": {"$more_than": 10**23}}}},
            "redemption_count",
        ),
        (
            "demo",
            {"filters": {"value": {"conditions": {"$more_than": "1e999999999"}}}},
            "'value'",
        ),
        (
            "demo",
            {"filters": {"created_at": {"conditions": {"$after": "-P999999999999D"}}}},
            "created_at",
        ),
        ("demo", {"filters": {"code": {"conditions": {"$is": "\ud800"}}}}, "surrogate"),
        ("demo", {"filters": {"code": {"conditions": {"$is": "x" * 5_000}}}}, "too long"),
        ("demo", {"filters": {"code": {"conditions": {"$is": "x" * 5_000_000}}}}, "too large"),
        ("demo", {"expires_in": 365 * 86_400}, "expires_in"),
        ("demo", {"expires_in": 5}, "expires_in"),
    ],
)
def test_bad_requests_are_refused_naming_the_problem(
    tenant: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan_export(VOUCHER, tenant, params)
    assert message in info.value.message, info.value.message


def test_integer_filters_are_checked_against_the_columns_range() -> None:
    top = 2**31 - 1
    plan_export(VOUCHER, "demo", {"filters": {"redemption_count": {"conditions": {"$is": top}}}})
    with pytest.raises(InvalidRequest, match="between"):
        plan_export(
            VOUCHER, "demo", {"filters": {"redemption_count": {"conditions": {"$is": top + 1}}}}
        )


def test_normalised_parameters_are_what_the_job_stores() -> None:
    plan = plan_export(VOUCHER, "demo", {"format": "CSV", "order": "-created_at"})
    assert plan.parameters == {
        "fields": list(VOUCHER.default_fields),
        "order": "-created_at",
        "format": "csv",
    }
    assert ExportParameters.model_validate(plan.parameters).stored() == plan.parameters


def test_relative_windows_are_anchored_at_the_runs_time() -> None:
    now = datetime(2026, 3, 15, 2, 0, tzinfo=UTC)
    plan = plan_export(
        VOUCHER,
        "demo",
        {
            "filters": {
                "created_at": {
                    "conditions": {"$after": "start_of_previous_month", "$before": "start_of_month"}
                }
            }
        },
        now=now,
    )
    from sqlalchemy.dialects import postgresql

    _, params = copy_sql(postgresql.dialect(), plan, plan.columns([]))
    instants = sorted(v for v in params.values() if isinstance(v, datetime))
    assert instants == [datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
