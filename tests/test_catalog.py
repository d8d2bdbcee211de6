"""The catalog, the flows and the prefect.yaml deployments are the same set."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml

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
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"] for d in config["deployments"]}
    expected = {f"flows/exports.py:export_{e.plural}" for e in ENTITIES.values()}
    assert expected <= entrypoints
    names = {d["name"] for d in config["deployments"]}
    assert {e.flow_name for e in ENTITIES.values()} <= names


def test_flow_forms_offer_the_registered_formats() -> None:
    from typing import get_args

    from exporters import FORMATS

    for flow in FLOWS.values():
        annotation = inspect.signature(flow.fn).parameters["format"].annotation
        assert set(get_args(eval(annotation, vars(exports)))) == set(FORMATS)


def test_each_deployment_runs_the_flow_of_its_name() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployed = {d["name"]: d["entrypoint"] for d in config["deployments"]}
    for entity in ENTITIES.values():
        assert deployed[entity.flow_name] == f"flows/exports.py:export_{entity.plural}"
    flow_names = [f.name for f in FLOWS.values()]
    assert len(set(flow_names)) == len(flow_names) == len(ENTITIES)


def test_every_declaration_is_exportable_and_scoped() -> None:
    """All fields of every entity compile into one COPY statement scoped to the tenant."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    from exportflow.request import plan_export
    from tasks.extract import copy_sql

    for entity in ENTITIES.values():
        assert {"id", "tenant_id"} <= set(entity.table.c.keys()), entity.name
        assert ("metadata" in entity.fields) == (entity.metadata_column is not None)
        assert "id" in entity.sort_keys
        plan = plan_export(entity, "demo", {"fields": list(entity.fields)})
        sql, params = copy_sql(postgresql.dialect(), plan, plan.columns(["k"]))
        assert sql.startswith("COPY (SELECT") and "demo" in params.values()
        assert isinstance(plan.scope(), sa.ColumnElement)


def test_older_sample_database_gets_the_new_indexes(engine: object) -> None:
    import sqlalchemy as sa

    from db.migrate import create_source_schema

    assert isinstance(engine, sa.Engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_orders_tenant_customer"))
    create_source_schema(engine)
    create_source_schema(engine)  # idempotent
    with engine.connect() as conn:
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("orders")}
    assert "ix_orders_tenant_customer" in indexes


def test_every_entity_flow_takes_the_same_parameters() -> None:
    """The API launches any entity's deployment with one parameter set."""
    signatures = {name: inspect.signature(flow.fn) for name, flow in FLOWS.items()}
    first = next(iter(signatures.values()))
    assert all(sig == first for sig in signatures.values())
