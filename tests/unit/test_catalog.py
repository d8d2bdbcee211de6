"""The catalog, the flows and the prefect.yaml deployments are the same set."""

from __future__ import annotations

import inspect
from pathlib import Path

from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.importtools import import_object

from entities import ENTITIES
from flows import exports
from flows.exports import FLOWS

ROOT = Path(__file__).resolve().parent.parent


def test_every_entity_has_a_flow_named_after_it() -> None:
    assert set(FLOWS) == set(ENTITIES)
    for name, flow in FLOWS.items():
        entity = ENTITIES[name]
        assert flow.name == entity.flow_name
        assert flow.fn.__name__ == f"export_{entity.plural}"
        assert getattr(exports, flow.fn.__name__) is flow  # a real def, deployable


def test_prefect_yaml_deploys_every_entity_flow() -> None:
    from deployments import declared_deployments, missing_deployments

    assert missing_deployments() == []
    entrypoints = {d["entrypoint"] for d in declared_deployments()}
    assert "flows.parts.export_part" in entrypoints  # the part runs of parallel exports
    assert "flows.maintenance.maintain" in entrypoints
    exported = {e for e in entrypoints if e.startswith("flows.exports.")}
    assert len(exported) == len(FLOWS)
    for entrypoint in entrypoints:  # what Prefect's worker does with a module path
        flow = load_flow_from_entrypoint(entrypoint)
        assert flow is import_object(entrypoint)  # the imported module's own flow, not a copy
    assert {load_flow_from_entrypoint(e) for e in exported} == set(FLOWS.values())


def test_each_flow_form_lists_its_entitys_fields_sort_keys_and_the_formats() -> None:
    """Prefect renders the run form from this schema: enums with descriptions, no job id."""
    from prefect.utilities.callables import parameter_schema

    from core.formats import FORMATS

    for name, flow in FLOWS.items():
        entity = ENTITIES[name]
        schema = parameter_schema(flow.fn).model_dump_for_openapi()
        assert set(schema["properties"]) == {"tenant", "parameters"}
        assert schema["required"] == ["tenant"]
        model = schema["definitions"][entity.parameters_model.__name__]
        props = model["properties"]
        assert all(p.get("description") for k, p in props.items()), name
        items = props["fields"]["anyOf"][0]["items"]
        names = items["anyOf"][0]["enum"] if "anyOf" in items else items["enum"]
        assert names == list(entity.fields)
        orders = props["order"]["anyOf"][0]["enum"]
        assert set(orders) == {k for s in entity.sort_keys for k in (s, f"-{s}")}
        assert props["format"]["enum"] == list(FORMATS)
        assert set(props["compression"]["anyOf"][0]["enum"]) == {"gzip", "zstd"}


def test_every_declaration_is_exportable_and_scoped() -> None:
    """All fields of every entity compile into one COPY statement scoped to the tenant."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from query.plan import plan_export
    from query.sql import copy_sql

    for entity in ENTITIES.values():
        assert {"id", "tenant_id"} <= set(entity.table.c.keys()), entity.name
        assert ("metadata" in entity.fields) == (entity.metadata_column is not None)
        assert "id" in entity.sort_keys
        plan = plan_export(entity, "demo", {"fields": list(entity.fields)})
        sql, params = copy_sql(postgresql.dialect(), plan, plan.columns(["k"]))
        assert sql.startswith("COPY (SELECT") and "demo" in params.values()
        assert isinstance(plan.scope(), sa.ColumnElement)


def test_every_entity_flow_takes_tenant_and_its_parameter_model() -> None:
    """The API launches any entity's deployment with one parameter shape."""
    for name, flow in FLOWS.items():
        params = inspect.signature(flow.fn).parameters
        assert list(params) == ["tenant", "parameters"]
        assert ENTITIES[name].parameters_model.__name__ in str(params["parameters"].annotation)
