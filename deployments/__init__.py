"""Deployments derived from the entity catalog: what ``prefect.yaml`` must hold, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from entities import ENTITIES

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


MAINTENANCE = ("maintenance", "flows.maintenance.maintain")
"""The maintenance deployment (the reaper), scheduled every minute."""

PART_DEPLOYMENTS = {"export-part": "flows.parts.export_part"}
"""The part runs of parallel exports (``flows.parallel`` launches them by this name)."""


def expected_deployments() -> dict[str, str]:
    """Deployment name -> entrypoint: one per entity (``export-vouchers`` -> its flow), and
    the maintenance flow and the part deployment of parallel exports.

    Entrypoints are module paths (``flows.exports.export_vouchers``), which Prefect imports as
    modules after the pull step: a run forked from the warm worker finds them imported already.
    A file path (``flows/exports.py:...``) is executed again as a new module by every run.
    """
    return {
        **{e.flow_name: f"flows.exports.export_{e.plural}" for e in ENTITIES.values()},
        MAINTENANCE[0]: MAINTENANCE[1],
        **PART_DEPLOYMENTS,
    }


def declared_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    config = yaml.safe_load(path.read_text()) or {}
    deployments: list[dict[str, Any]] = config.get("deployments") or []
    return deployments


def missing_deployments(path: Path = PREFECT_YAML) -> list[str]:
    """Deployments (one per entity, maintenance, parts) that ``prefect.yaml`` lacks or points
    at the wrong flow."""
    declared = {d.get("name"): d.get("entrypoint") for d in declared_deployments(path)}
    return [
        f"{name} ({entrypoint})"
        for name, entrypoint in expected_deployments().items()
        if declared.get(name) != entrypoint
    ]
