"""The catalog's names kept for the CLI's early refusal: what is saved is what the catalog
says, an edited catalog is never checked against old names, and a request is refused from the
saved names exactly as the catalog refuses it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.names import catalog_digest, load_names, names_path, resolve, save_names
from entities import ENTITIES, get_entity
from query.plan import plan_export

ROOT = Path(__file__).resolve().parents[2]


def test_saved_names_are_the_catalogs(tmp_path: Path) -> None:
    assert save_names(tmp_path, (e.names for e in ENTITIES.values())) == names_path(tmp_path)
    assert load_names(tmp_path) == {name: e.names for name, e in ENTITIES.items()}
    assert [p.name for p in tmp_path.iterdir()] == [names_path(tmp_path).name]  # no partial


def test_names_saved_for_another_catalog_or_unreadable_are_not_used(tmp_path: Path) -> None:
    assert load_names(tmp_path) is None  # never saved
    save_names(tmp_path, (e.names for e in ENTITIES.values()))
    names_path(tmp_path).rename(names_path(tmp_path, "0" * 16))  # the catalog as it was
    assert load_names(tmp_path) is None
    names_path(tmp_path).write_text('[{"name": "voucher"}]')  # not names
    assert load_names(tmp_path) is None
    names_path(tmp_path).write_text("{")
    assert load_names(tmp_path) is None


def test_names_that_cannot_be_saved_leave_the_check_to_the_catalog(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert save_names(blocked / "cache", (e.names for e in ENTITIES.values())) is None


def test_an_edited_catalog_has_another_digest(tmp_path: Path) -> None:
    for source in ("entities", "core"):
        shutil.copytree(ROOT / source, tmp_path / source, ignore=shutil.ignore_patterns("__py*"))
    assert catalog_digest(tmp_path) == catalog_digest(ROOT)
    skus = tmp_path / "entities" / "skus.py"
    skus.write_text(skus.read_text().replace('"sku"', '"stock_unit"', 1))
    assert catalog_digest(tmp_path) != catalog_digest(ROOT)


ODD_NAMES = ["secret", "", "metadata.tier", "metadata.", "metadata.\x01", "Code", " code"]
NAMES = st.sampled_from([*sorted({f for e in ENTITIES.values() for f in e.fields}), *ODD_NAMES])
OBJECTS = st.sampled_from(
    [n for e in ENTITIES.values() for n in (e.name, e.plural)] + ["coupons", "Voucher", ""]
)
ORDERS = st.one_of(
    st.none(),
    st.builds(lambda sign, name: sign + name, st.sampled_from(["", "-", "+"]), NAMES),
)


@settings(max_examples=300, deadline=None)
@given(OBJECTS, st.one_of(st.none(), st.lists(NAMES, max_size=4)), ORDERS)
def test_saved_names_refuse_exactly_what_the_catalog_refuses(
    tmp_path_factory: pytest.TempPathFactory,
    exported_object: str,
    fields: list[str] | None,
    order: str | None,
) -> None:
    cache = tmp_path_factory.getbasetemp() / "names"
    if load_names(cache) is None:
        save_names(cache, (e.names for e in ENTITIES.values()))
    saved = load_names(cache)
    assert saved is not None

    quick: InvalidRequest | None = None
    try:
        names = resolve(saved, exported_object)
        names.check_fields(fields)
        names.check_order(order)
    except InvalidRequest as exc:
        quick = exc

    full: InvalidRequest | None = None
    try:
        known = (e.name for e in ENTITIES.values() if exported_object in (e.name, e.plural))
        entity = get_entity(next(known, exported_object))  # as the CLI resolves it
        plan_export(entity, "demo", {"fields": fields, "order": order})
    except InvalidRequest as exc:
        full = exc

    assert (quick and (quick.message, quick.key, quick.details)) == (
        full and (full.message, full.key, full.details)
    )
