"""Prefect flows: one per entity (``flows.exports``) over one pipeline (``flows.pipeline``)."""
