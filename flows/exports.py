"""One Prefect flow per entity, made from its declaration: ``export_<plural>`` runs
``flows.pipeline.run_export`` for that entity.

Each flow's ``parameters`` is the entity's parameter model (``Entity.parameters_model``: the
one ``ExportParameters`` with that entity's fields and sort keys as enums), so the Prefect UI
renders a typed form per entity. The flows are module attributes (``flows.exports.export_vouchers``
is a valid entrypoint: ``prefect deploy`` and workers import it by name), so
adding an entity adds its flow without a line here. A run for a job the API created carries
the job id as a run tag, not as a parameter: the form shows only what a user chooses.
"""

from typing import Any, cast

from prefect import Flow, flow

from core.params import ExportParameters
from entities import ENTITIES, Entity
from flows.hooks import on_cancellation, on_crashed
from flows.naming import run_namer
from flows.pipeline import run_export

ExportFlow = Flow[..., dict[str, Any]]
"""Called in-process it returns the finished job as a dict (a cancelled run raises)."""


def entity_flow(entity: Entity) -> ExportFlow:
    """The flow of ``entity``: ``(tenant, parameters) -> the finished job``."""
    model = entity.parameters_model

    def export(tenant: str, parameters: model | None = None) -> dict[str, Any]:  # type: ignore[valid-type]
        # a returned State (Cancelled: the job was cancelled or taken over) ends the run so
        return cast("dict[str, Any]", run_export(entity, tenant, parameters))

    export.__name__ = export.__qualname__ = f"export_{entity.plural}"
    export.__module__ = __name__
    export.__doc__ = f"Export {entity.plural.replace('_', ' ')} of one tenant. {entity.description}"
    made: ExportFlow = flow(  # type: ignore[call-overload]
        export,
        name=entity.flow_name,
        description=entity.description,
        flow_run_name=run_namer(entity.name),
        # The pipeline validates (and records a refused request on its job row); Prefect's own
        # check would fail the run before any job row exists.
        validate_parameters=False,
        # Where the process survives (or the runner/worker sees the crash), record it at once;
        # a dead machine runs no hook, and the reaper then acts when the lease runs out.
        on_crashed=[on_crashed],
        on_cancellation=[on_cancellation],
    )
    return made


FLOWS: dict[str, ExportFlow] = {name: entity_flow(e) for name, e in ENTITIES.items()}
"""exported_object -> its flow."""

_BY_FUNCTION = {f"export_{e.plural}": FLOWS[name] for name, e in ENTITIES.items()}


def __getattr__(name: str) -> ExportFlow:
    """``export_<plural>``: the entrypoint names in ``prefect.yaml``."""
    try:
        return _BY_FUNCTION[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_BY_FUNCTION])


__all__ = ["FLOWS", "ExportParameters", "entity_flow", *_BY_FUNCTION]
