"""Chunk validation off the writer's thread, and Great Expectations without its unused parts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ValidationFailed
from entities import get_entity
from query.plan import plan_export
from tasks.validate import BehindTheWriter, ChunkValidator

ROOT = Path(__file__).resolve().parents[2]


def _vouchers(rows: list[tuple[str | None, str, float, str]]) -> pa.RecordBatch:
    code, voucher_type, value, discount_type = zip(*rows, strict=True)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(code, pa.string()),
            pa.array(voucher_type, pa.string()),
            pa.array(value, pa.float64()),
            pa.array(discount_type, pa.string()),
        ],
        names=["code", "voucher_type", "value", "discount_type"],
    )


TYPES = [pa.string(), pa.string(), pa.float64(), pa.string()]
GOOD = [("A-1", "DISCOUNT_VOUCHER", 5.0, "AMOUNT"), ("A-2", "GIFT_VOUCHER", 0.0, "PERCENT")]
BAD = [("B-1", "MYSTERY", -3.0, "AMOUNT"), ("B-2", "GIFT_VOUCHER", 1.0, "UNIT")]


def _validator() -> ChunkValidator:
    entity = get_entity("voucher")
    plan = plan_export(
        entity, "demo", {"fields": ["code", "voucher_type", "value", "discount_type"]}
    )
    validator = ChunkValidator(entity, plan.columns())
    validator.prepare()
    return validator


def _check_behind(
    validator: ChunkValidator,
    chunks: list[list[tuple[str | None, str, float, str]]],
    group_rows: int = 1,
) -> None:
    """Submit 2-row ``chunks`` (rows 1-2, 3-4, ...) to a writer-side checker one chunk deep,
    finish, and close both whatever happens (a failure propagates)."""
    checking = BehindTheWriter(validator, depth=1, group_rows=group_rows)
    try:
        for i, rows in enumerate(chunks):
            checking.submit(_vouchers(rows), i * 2)
        checking.finish()
    finally:
        checking.close()
        validator.close()


def _good_then_bad(validator: ChunkValidator) -> None:
    """Check a good chunk (passes) and a bad one (fails), then close the validator."""
    try:
        validator.validate(_vouchers(GOOD), 0)
        with pytest.raises(ValidationFailed):
            validator.validate(_vouchers(BAD), 2)
    finally:
        validator.close()


def test_chunks_checked_behind_the_writer_are_all_counted() -> None:
    validator = _validator()
    _check_behind(validator, [GOOD] * 5)
    assert validator.report.chunks == 5
    assert validator.report.failed_chunks == 0


def test_a_chunk_is_not_fingerprinted(monkeypatch: pytest.MonkeyPatch) -> None:
    """GX's batch fingerprint (a hash of the whole frame, read by no validation) is skipped;
    a good chunk still passes and a bad one still fails."""
    import pandas as pd

    hashed: list[int] = []
    hash_object = pd.util.hash_pandas_object

    def counting(obj: object, *args: object, **kwargs: object) -> object:
        hashed.append(1)
        return hash_object(obj, *args, **kwargs)

    monkeypatch.setattr(pd.util, "hash_pandas_object", counting)
    validator = _validator()
    _good_then_bad(validator)
    assert validator.report.chunks == 2
    assert hashed == []


def test_an_export_never_serializes_the_ephemeral_project_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GX's YAML dump of the project config (into an in-memory store nothing reads) is
    skipped; an export's datasource is still added, used and removed."""
    from great_expectations.data_context.data_context_variables import DataContextVariables

    from tasks.validate import _gx_context

    saved: list[int] = []
    monkeypatch.setattr(DataContextVariables, "save", lambda self: saved.append(1))
    validator = _validator()
    name = validator._name
    assert name in _gx_context().data_sources.all()
    _good_then_bad(validator)
    assert name not in _gx_context().data_sources.all()
    assert validator.report.chunks == 2
    assert saved == []


def test_a_failing_chunk_stops_the_writer_with_its_rows_and_examples() -> None:
    validator = _validator()
    with pytest.raises(ValidationFailed) as failed:
        # the writer goes on until the failure reaches it
        _check_behind(validator, [GOOD, BAD] + [GOOD] * 48)
    message = str(failed.value)
    assert "rows 3-4" in message
    assert "expect_column_values_to_be_in_set(voucher_type): 1 rows (row 3)" in message
    assert "MYSTERY" in message
    assert validator.report.failed_chunks == 1  # chunks after the failure are not checked


def test_closing_after_the_writer_failed_does_not_wait_for_pending_chunks() -> None:
    validator = _validator()
    checking = BehindTheWriter(validator, depth=2)
    for i in range(3):
        checking.submit(_vouchers(GOOD), i * 2)
    checking.close()  # the writer's own error path: no finish()
    validator.close()
    assert validator.report.chunks <= 3


def test_great_expectations_loads_without_the_modules_no_expectation_uses() -> None:
    """In a fresh interpreter: scipy.stats and altair stay stand-ins after GX and a validation,
    and still work the moment something uses them."""
    script = textwrap.dedent(
        """
        import sys
        from tasks.validate import UNUSED_BY_EXPECTATIONS, warm_up
        warm_up()
        import great_expectations
        loaded = [n for n in sys.modules if n.startswith(("scipy.stats.", "altair."))]
        assert not loaded, loaded
        for name in UNUSED_BY_EXPECTATIONS:
            assert type(sys.modules[name]).__name__ == "_OnFirstUse", name
        from scipy import stats
        assert abs(stats.entropy([0.5, 0.5]) - 0.6931471805599453) < 1e-12
        assert type(sys.modules["scipy.stats"]).__name__ == "module"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_a_writer_that_fails_later_gets_the_earlier_validation_failure() -> None:
    """``stop`` (the writer's error path) hands back a failure found meanwhile, so the export
    reports the broken expectation rather than what went wrong in a later chunk."""
    validator = _validator()
    checking = BehindTheWriter(validator, depth=2)
    checking.submit(_vouchers(BAD), 0)
    deadline = time.monotonic() + 30
    while validator.report.failed_chunks == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    failure = checking.stop()
    validator.close()
    assert isinstance(failure, ValidationFailed)
    assert "rows 1-2" in str(failure)


def test_a_missing_value_is_reported_as_null() -> None:
    """A NULL code fails not-null and its example is JSON null: GX hands it over as NaN, which
    the job's result (JSON) cannot hold; an unknown type fails in-set with its value."""
    validator = _validator()
    rows = [(None, "DISCOUNT_VOUCHER", 1.0, "AMOUNT"), ("C-2", "NOPE", 1.0, "UNIT")]
    try:
        with pytest.raises(ValidationFailed):
            validator.validate(_vouchers(rows), 0)
    finally:
        validator.close()
    failures = {f["column"]: f for f in validator.report.failures.values()}
    assert failures["code"]["unexpected_count"] == 1
    assert failures["code"]["examples"] == [None]
    assert failures["voucher_type"]["examples"] == ["NOPE"]
    assert json.loads(json.dumps(validator.report.as_dict(), allow_nan=False))


def test_chunks_are_checked_in_groups_of_at_least_group_rows() -> None:
    """Five 2-row chunks with groups of 4 rows: three GX calls (4, 4 and the last 2 rows); a
    failure names the rows of its whole group."""
    validator = _validator()
    _check_behind(validator, [GOOD] * 5, group_rows=4)
    assert validator.report.chunks == 3
    assert {r.rows for r in validator.report.results} == {10}

    validator = _validator()
    with pytest.raises(ValidationFailed, match=r"rows 5-8 .*MYSTERY"):
        _check_behind(validator, [GOOD, GOOD, GOOD, BAD, GOOD, GOOD], group_rows=4)
    assert validator.report.chunks == 2
    assert validator.report.failed_chunks == 1


_TYPES = ["DISCOUNT_VOUCHER", "GIFT_VOUCHER", "LOYALTY_CARD", "MYSTERY", "", "gift_voucher"]


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.none() | st.just("A-1"),
            st.none() | st.sampled_from(_TYPES),
            st.none() | st.sampled_from([0.0, 2.5, -1.0]),
            st.none() | st.sampled_from(["AMOUNT", "PERCENT", "UNIT", "FIXED", "X"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_compact_columns_give_gx_the_same_results_as_plain_ones(
    rows: list[tuple[str | None, str | None, float | None, str | None]],
) -> None:
    """Text checked only against a set goes to GX as a categorical, text checked only for
    NULL as its nullness: for nulls, empty text and values outside the set, pass/fail, the
    message, counts and examples are what GX says for the plain text columns."""
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(list(column), t)
            for column, t in zip(zip(*rows, strict=True), TYPES, strict=True)
        ],
        names=["code", "voucher_type", "value", "discount_type"],
    )

    def outcome(encoded: bool) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:
        validator = _validator()
        assert validator._in_set_only == {"discount_type", "voucher_type"}
        assert validator._null_only == {"code"}
        if not encoded:
            validator._in_set_only = validator._null_only = set()
        message = None
        try:
            validator.validate(batch, 0)
        except ValidationFailed as exc:
            message = str(exc)
        finally:
            validator.close()
        return message, validator.report.as_dict(), [r.as_dict() for r in validator.report.results]

    assert outcome(encoded=True) == outcome(encoded=False)
