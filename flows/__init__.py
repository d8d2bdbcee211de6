"""Prefect flows: one per entity (``flows.exports``) over one pipeline (``flows.pipeline``)."""

from core.memory import tune_allocators

# Before any flow module imports pyarrow: a flow run that a plain Prefect worker starts (or the
# CLI runs in-process) gets the same allocator options as the warm worker's runs.
tune_allocators()
