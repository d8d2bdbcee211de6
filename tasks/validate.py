"""Validate: run the entity's Great Expectations suite on every chunk.

Great Expectations is imported only here, and only when an export has expectations to run
(it costs ~3 s to import). Each chunk hands GX just the columns its expectations name, in the
compact form GX gives the same results for (``ChunkValidator.compact``: plain numbers,
categoricals, a NULL-checked column's nullness), which keeps a 100k-row chunk at ~0.1 s
instead of >1 s; chunks are checked in groups (``BehindTheWriter``), for pass/fail only, and
for counts and examples only when a group fails.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import logging
import queue
import sys
import threading
import types
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ValidationFailed
from core.types import Column
from entities import Entity, Expectation

_LOCK = threading.Lock()
_CONTEXT: Any = None

UNUSED_BY_EXPECTATIONS = ("scipy.stats", "altair")
"""Modules ``import great_expectations`` loads for expectations no entity declares (the KL
divergence and Kolmogorov-Smirnov ones, and their charts): ~75 MB and ~1 s of every run."""


class _OnFirstUse(types.ModuleType):
    """Stands in ``sys.modules`` for a module until an attribute of it is used, then imports
    the real one (and returns that attribute): ``import x`` / ``from p import x`` cost nothing,
    ``x.anything`` works as always. ``__spec__`` is a real attribute, so the import system
    can look at it without loading the module."""

    def __init__(self, name: str, spec: importlib.machinery.ModuleSpec) -> None:
        super().__init__(name)
        self.__spec__ = spec

    def __getattr__(self, attr: str) -> Any:
        with _LOCK_DEFERRED:  # the import itself is serialised by importlib's module lock
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        return getattr(real, attr)


_LOCK_DEFERRED = threading.RLock()


def defer_unused_imports(names: Sequence[str] = UNUSED_BY_EXPECTATIONS) -> None:
    """Put ``_OnFirstUse`` stand-ins for ``names`` not imported yet (before importing GX)."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is not None:
            sys.modules[name] = _OnFirstUse(name, spec)


def _gx_context() -> Any:
    """One ephemeral GX context per process, progress bars off."""
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            defer_unused_imports()
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every pandas batch below HASH_THRESHOLD bytes (1 GB) for its
            # batch markers: an md5 over ``hash_pandas_object`` of the whole frame, which no
            # validation reads (the markers go only into stored validation results, which
            # ephemeral runs never keep). It was ~45% of the time GX spent per chunk (34.8 ->
            # 19.1 ms per 49k-row voucher chunk), all of it holding the GIL the stream needs.
            pandas_execution_engine.HASH_THRESHOLD = 0
            for name in ("great_expectations", "great_expectations.data_context.types.base"):
                logging.getLogger(name).setLevel(logging.WARNING)

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            # An ephemeral context keeps its project config in memory, yet GX serializes the
            # whole of it to YAML (ruamel) into a store nothing reads, at every datasource
            # change: 4 times per export (each export's datasource, asset and batch definition
            # added, then deleted). That was 21 of the 25 ms an export's ``prepare`` and
            # ``close`` took warm, and ~0.1 s of a forked run's own CPU.
            context._save_project_config = lambda: None  # type: ignore[method-assign]
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


GX_TYPES = {
    "not_null": "expect_column_values_to_not_be_null",
    "in_set": "expect_column_values_to_be_in_set",
    "between": "expect_column_values_to_be_between",
    "match_regex": "expect_column_values_to_match_regex",
}
"""Our expectation kinds -> the Great Expectations expectation types that run them."""

MAX_OBSERVED_VALUES = 20
"""Distinct values an ``in_set`` result lists at most."""


@dataclass
class ExpectationResult:
    """One expectation over the whole export: pass/fail, counts, what was observed."""

    kind: str
    column: str
    args: dict[str, Any]
    rows: int = 0
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
    nulls: int = 0
    minimum: Any = None
    maximum: Any = None
    values: set[Any] = field(default_factory=set)
    values_capped: bool = False

    def observe(self, array: pa.Array) -> None:
        """Fold one chunk's column into the observed values (Arrow kernels, no rows in Python;
        a dictionary-encoded column's values are its dictionary)."""
        self.rows += len(array)
        self.nulls += array.null_count
        if self.kind == "between" and len(array) > array.null_count:
            bounds = pc.min_max(array).as_py()
            low, high = bounds["min"], bounds["max"]
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)
        elif self.kind == "in_set" and not self.values_capped:
            present = (
                array.dictionary
                if pa.types.is_dictionary(array.type)
                else pc.unique(array.drop_null())
            )
            self.values.update(present.to_pylist())
            if len(self.values) > MAX_OBSERVED_VALUES:
                self.values_capped = True

    def as_dict(self) -> dict[str, Any]:
        observed: dict[str, Any] = {"rows": self.rows, "nulls": self.nulls}
        if self.kind == "between":
            observed |= {"min": _plain(self.minimum), "max": _plain(self.maximum)}
        elif self.kind == "in_set":
            shown = sorted(map(str, self.values))[:MAX_OBSERVED_VALUES]
            observed |= {"values": shown, "more_values": self.values_capped}
        return {
            "expectation": GX_TYPES[self.kind],
            "kind": self.kind,
            "column": self.column,
            "args": {
                k: _plain(v) if not isinstance(v, list | tuple) else list(v)
                for k, v in self.args.items()
            },
            "success": self.unexpected_count == 0,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": round(100 * self.unexpected_count / self.rows, 4)
            if self.rows
            else 0.0,
            "examples": self.examples,
            "observed": observed,
        }


@dataclass
class ValidationReport:
    """What validation saw over the whole export (kept in the job result)."""

    expectations: list[str] = field(default_factory=list)
    chunks: int = 0
    failed_chunks: int = 0
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[ExpectationResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectations": self.expectations,
            "chunks": self.chunks,
            "failed_chunks": self.failed_chunks,
            "failures": list(self.failures.values()),
        }

    def quality(self, policy: str) -> dict[str, Any]:
        """The quality report: each expectation with pass/fail and observed values."""
        rows = max((r.rows for r in self.results), default=0)
        return {
            "engine": "great_expectations",
            "success": all(r.unexpected_count == 0 for r in self.results),
            "on_invalid": policy,
            "rows_checked": rows,
            "chunks": self.chunks,
            "failed_chunks": self.failed_chunks,
            "expectations": [r.as_dict() for r in self.results],
        }


class ChunkValidator:
    """Validates chunks of one export against the expectations on its selected columns."""

    def __init__(self, entity: Entity, columns: Sequence[Column]) -> None:
        selected = {c.name: c for c in columns}
        self.entity = entity
        self.expectations = [e for e in entity.expectations if e.column in selected]
        self.columns = sorted({e.column for e in self.expectations})
        self._types = {name: selected[name].type for name in self.columns}
        kinds = {
            name: {e.kind for e in self.expectations if e.column == name} for name in self.columns
        }
        self._in_set_only = {
            name
            for name in self.columns
            if self._types[name] == "string" and kinds[name] == {"in_set"}
        }
        self._null_only = {name for name in self.columns if kinds[name] == {"not_null"}}
        self.report = ValidationReport(
            [f"{e.kind}({e.column})" for e in self.expectations],
            results=[ExpectationResult(e.kind, e.column, dict(e.args)) for e in self.expectations],
        )
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

    def compact(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A chunk's validated columns (``self.columns`` order) in the form GX checks them,
        with what they hold folded into the report. Made as the chunk is written, so a
        group waiting for its check holds these and not the chunk's own text:

        - a column checked only for NULL is its nullness alone (an ``int8`` 0 or NULL per
          row): GX's ``not_null`` reads nothing else, and a NULL's example is a NULL either way;
        - a text column checked only against a set of values is dictionary-encoded (a pandas
          categorical: an integer per row instead of a string copy);
        - a decimal is a float (GX compares numbers; the report's bounds stay exact).

        GX gives the same results for these as for the plain columns (``test_validate``);
        147k-row groups of the benchmark's vouchers peaked ~13 MB lower with the categoricals
        alone."""
        arrays = []
        for name in self.columns:
            array = batch.column(name)
            if name in self._null_only:
                array = pc.if_else(pc.is_valid(array), pa.scalar(0, pa.int8()), _NULL_INT8)
            elif name in self._in_set_only:
                array = pc.dictionary_encode(array)
            elif self._types[name] == "decimal":
                array = array.cast(pa.float64())
            arrays.append(array)
        compact = pa.RecordBatch.from_arrays(arrays, names=self.columns)
        for observed in self.report.results:  # the set's members from the dictionary
            encoded = observed.column in self._in_set_only
            observed.observe((compact if encoded else batch).column(observed.column))
        return compact

    def validate(self, batch: pa.RecordBatch, first_row: int) -> None:
        """Check one chunk now (``compact`` then ``check``)."""
        if self.expectations and batch.num_rows:
            self.check(self.compact(batch), first_row)

    def check(self, group: pa.RecordBatch | pa.Table, first_row: int) -> None:
        """Check ``compact`` chunks (one, or a group as a table) in one GX call; raise
        ``ValidationFailed`` under the ``fail`` policy. A caller that passes the only
        reference to ``group`` (as ``BehindTheWriter`` does) gets its memory back while GX's
        frame is built (``self_destruct``)."""
        if not self.expectations or group.num_rows == 0:
            return
        from great_expectations.validator.v1_validator import Validator

        self.prepare()
        self.report.chunks += 1
        rows = group.num_rows
        table = pa.Table.from_batches([group]) if isinstance(group, pa.RecordBatch) else group
        del group
        # GX's own validator over the batch definition: the chunk is loaded once (and not
        # fingerprinted, see ``_gx_context``), where ``get_batch().validate()`` loads it twice.
        # Pass/fail alone skips collecting unexpected values; only a failing chunk is checked
        # again, on the same loaded batch, for the counts and examples the job reports.
        gx = Validator(
            self._batch_definition,
            result_format="BOOLEAN_ONLY",
            batch_parameters={"dataframe": _frame(table)},
        )
        if gx.validate_expectation_suite(self._suite).success:
            return
        gx.result_format = "SUMMARY"
        result: Any = gx.validate_expectation_suite(self._suite)
        self.report.failed_chunks += 1
        failed = []
        for item in result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column")
            key = f"{config.type}({column})"
            examples = [_plain(v) for v in (item.result.get("partial_unexpected_list") or [])[:5]]
            # the frame's index is the row's place in the group: 1-based rows of the export
            at = [
                first_row + int(i) + 1
                for i in item.result.get("partial_unexpected_index_list") or []
            ][:5]
            count = int(item.result.get("unexpected_count") or 0)
            entry = self.report.failures.setdefault(
                key,
                {
                    "expectation": config.type,
                    "column": column,
                    "unexpected_count": 0,
                    "examples": examples,
                    "rows": at,
                },
            )
            entry["unexpected_count"] += count
            for observed in self.report.results:
                if GX_TYPES[observed.kind] == config.type and observed.column == column:
                    observed.unexpected_count += count
                    observed.examples = (observed.examples + examples)[:5]
            where = (
                f" (row {', '.join(map(str, at[:3]))}{', ...' if count > 3 else ''})" if at else ""
            )
            failed.append(f"{key}: {count} rows{where}, e.g. {examples[:3]}")
        if self.entity.on_invalid == "fail":
            raise ValidationFailed(
                f"{self.entity.name} rows {first_row + 1}-{first_row + rows} broke "
                f"{len(failed)} expectation(s): " + "; ".join(failed),
                details=list(self.report.failures.values()),
            )


_NULL_INT8 = pa.scalar(None, pa.int8())


def _frame(table: pa.Table) -> Any:
    """``table`` as the pandas frame GX checks, emptying it: each column's Arrow memory is
    let go as it is converted (``self_destruct``, ``table`` being the only reference), so a
    group is not held twice while GX runs."""
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _plain(value: Any) -> Any:
    """An example value as JSON can hold it: a missing one (None, NaN, pandas' NA) is null."""
    import pandas as pd  # loaded with Great Expectations, which produced ``value``

    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def _take(group: list[pa.RecordBatch]) -> pa.Table:
    """``group`` as one table, emptying the list: the table is then the only reference."""
    table = pa.Table.from_batches(group)
    group.clear()
    return table


class _Stopped(Exception):
    """The writer gave up (its own error, a cancel): pending chunks are not checked."""


class BehindTheWriter:
    """Runs a ``ChunkValidator`` on its own thread, at most ``depth`` chunks behind the writer.

    Checking a chunk is mostly Python (GX's metric graph) and writing it mostly Arrow's C++:
    side by side on two cores they overlap instead of adding up. The writer only ever writes a
    temporary file, stored after ``finish`` returned, so a chunk that fails is still caught
    before anything is published -- the writer stops at its next chunk (``submit`` raises the
    failure) and the file is discarded. Only a chunk's validated columns are queued, in their
    compact form (``ChunkValidator.compact``, made on the writer's thread).

    Chunks are gathered until they hold ``group_rows`` rows and checked in one GX call (the
    last group when the stream ends): a call costs 17-45 ms of GX's Python whatever its rows
    (a fast and a slow VM), and ~0.1-0.2 us a row, so 1M rows checked chunk by chunk spent
    0.36-0.9 s of the GIL the stream needs on the fixed part alone (``Settings.validate_rows``).
    """

    def __init__(self, validator: ChunkValidator, depth: int = 2, group_rows: int = 1) -> None:
        self.validator = validator
        self.group_rows = group_rows
        self._queue: queue.Queue[tuple[pa.RecordBatch, int] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="validate-chunks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        arrow_pool = pa.default_memory_pool()
        group: list[pa.RecordBatch] = []
        first_row = rows = 0
        while True:
            item = self._queue.get()
            done = item is None
            if item is not None:
                batch, first = item
                item = None
                if not group:
                    first_row = first
                group.append(batch)
                rows += batch.num_rows
                del batch
                if rows < self.group_rows:
                    continue
            if group and self._error is None:
                try:
                    self.validator.check(_take(group), first_row)
                except BaseException as exc:  # handed to the writer's thread
                    self._error = exc
            group = []
            rows = 0
            # this thread's allocator heap: the group's pandas frame and Arrow copies
            arrow_pool.release_unused()
            if done:
                return

    def _raise(self) -> None:
        if self._error is not None and not isinstance(self._error, _Stopped):
            raise self._error

    def submit(self, batch: pa.RecordBatch, first_row: int) -> None:
        """Queue a chunk (waits while ``depth`` are pending); raise an earlier chunk's failure."""
        self._raise()
        self._queue.put((self.validator.compact(batch), first_row))

    def finish(self) -> None:
        """Wait until every chunk is checked; raise the failure, if any."""
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def stop(self) -> BaseException | None:
        """Stop (the writer failed) and return the failure of a chunk checked meanwhile."""
        self.close()
        return None if isinstance(self._error, _Stopped) else self._error

    def close(self) -> None:
        """Stop (after ``finish``, or when the writer failed): pending chunks are skipped."""
        if self._thread.is_alive():
            if self._error is None:
                self._error = _Stopped()
            self._queue.put(None)
            self._thread.join()
