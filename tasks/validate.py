"""Validate: run the entity's Great Expectations suite on every chunk.

Great Expectations is imported only here, and only when an export has expectations to run
(it costs ~3 s to import). Each chunk hands GX just the columns its expectations name, as
plain numbers/strings, which keeps a 100k-row chunk at ~0.1 s instead of >1 s; a chunk is
checked for pass/fail only, and for counts and examples only when it fails.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from core.errors import ValidationFailed
from core.types import Column
from entities import Entity, Expectation

_LOCK = threading.Lock()
_CONTEXT: Any = None


def _gx_context() -> Any:
    """One ephemeral GX context per process, progress bars off."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            for name in ("great_expectations", "great_expectations.data_context.types.base"):
                logging.getLogger(name).setLevel(logging.WARNING)

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _CONTEXT = context
        return _CONTEXT


def warm_up() -> None:
    """Import Great Expectations and build its context now, before any snapshot is open.

    The import is a fixed cost of a few seconds; paying it up front keeps it out of the
    streaming part of an export (where it would stall the COPY) and out of the open snapshot.
    """
    _gx_context()


def _gx_expectation(exp: Expectation) -> Any:
    from great_expectations import expectations

    gxe: Any = expectations

    if exp.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=exp.column)
    if exp.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(
            column=exp.column, value_set=list(exp.args["values"])
        )
    if exp.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(
            column=exp.column, min_value=exp.args.get("min"), max_value=exp.args.get("max")
        )
    return gxe.ExpectColumnValuesToMatchRegex(column=exp.column, regex=exp.args["regex"])


@dataclass
class ValidationReport:
    """What validation saw over the whole export (kept in the job result)."""

    expectations: list[str] = field(default_factory=list)
    chunks: int = 0
    failed_chunks: int = 0
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectations": self.expectations,
            "chunks": self.chunks,
            "failed_chunks": self.failed_chunks,
            "failures": list(self.failures.values()),
        }


class ChunkValidator:
    """Validates chunks of one export against the expectations on its selected columns."""

    def __init__(self, entity: Entity, columns: Sequence[Column]) -> None:
        selected = {c.name: c for c in columns}
        self.entity = entity
        self.expectations = [e for e in entity.expectations if e.column in selected]
        self.columns = sorted({e.column for e in self.expectations})
        self._types = {name: selected[name].type for name in self.columns}
        self.report = ValidationReport([f"{e.kind}({e.column})" for e in self.expectations])
        self._suite: Any = None
        self._batch_definition: Any = None
        self._name = ""

    def prepare(self) -> None:
        """Build the suite and batch definition (once; ``validate`` calls it when needed)."""
        if self._suite is not None or not self.expectations:
            return
        import great_expectations as gx

        context = _gx_context()
        # id(self) is reused once a validator is freed: two exports of one entity would then
        # collide on the suite name in the shared context.
        name = self._name = f"{self.entity.name}-{uuid.uuid4().hex}"
        suite = gx.ExpectationSuite(name=name)
        for exp in self.expectations:
            suite.add_expectation(_gx_expectation(exp))
        self._suite = context.suites.add(suite)
        asset = context.data_sources.add_or_update_pandas(name).add_dataframe_asset("chunk")
        self._batch_definition = asset.add_batch_definition_whole_dataframe("chunk")

    def close(self) -> None:
        """Drop this export's suite and datasource from the process-wide GX context."""
        if self._suite is None:
            return
        context = _gx_context()
        for remove in (context.suites.delete, context.data_sources.delete):
            with contextlib.suppress(Exception):  # never fail an export over cleanup
                remove(self._name)
        self._suite = self._batch_definition = None

    def _frame(self, batch: pa.RecordBatch) -> Any:
        arrays = []
        for name in self.columns:
            array = batch.column(name)
            if self._types[name] == "decimal":
                array = array.cast(pa.float64())
            arrays.append(array)
        return pa.table(arrays, names=self.columns).to_pandas()

    def validate(self, batch: pa.RecordBatch, first_row: int) -> None:
        """Check one chunk; raise ``ValidationFailed`` under the ``fail`` policy."""
        if not self.expectations or batch.num_rows == 0:
            return
        self.prepare()
        self.report.chunks += 1
        gx_batch = self._batch_definition.get_batch(
            batch_parameters={"dataframe": self._frame(batch)}
        )
        # Pass/fail alone skips collecting unexpected values (~30% of a chunk's validation);
        # only a failing chunk is checked again for the counts and examples the job reports.
        if gx_batch.validate(self._suite, result_format="BOOLEAN_ONLY").success:
            return
        result = gx_batch.validate(self._suite, result_format="SUMMARY")
        self.report.failed_chunks += 1
        failed = []
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column")
            key = f"{config.type}({column})"
            examples = [_plain(v) for v in (item.result.get("partial_unexpected_list") or [])[:5]]
            count = int(item.result.get("unexpected_count") or 0)
            entry = self.report.failures.setdefault(
                key,
                {
                    "expectation": config.type,
                    "column": column,
                    "unexpected_count": 0,
                    "examples": examples,
                },
            )
            entry["unexpected_count"] += count
            failed.append(f"{key}: {count} rows, e.g. {examples[:3]}")
        if self.entity.on_invalid == "fail":
            raise ValidationFailed(
                f"{self.entity.name} rows {first_row + 1}-{first_row + batch.num_rows} broke "
                f"{len(failed)} expectation(s): " + "; ".join(failed),
                details=list(self.report.failures.values()),
            )


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
