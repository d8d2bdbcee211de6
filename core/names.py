"""What a request may name of an entity, without the SQL behind the names.

``EntityNames`` holds an entity's names (fields, sort keys, whether it has ``metadata.<key>``)
and the checks of a request's ``fields`` and ``order`` against them: the one implementation
``query.plan`` runs for every export (through ``Entity.names``). It imports neither SQLAlchemy
nor the catalog, so the CLI can refuse a request naming an unknown entity, field or sort key
from a saved copy of the catalog's names (``save_names`` / ``load_names``) before it imports
either: the copy is keyed by a digest of the catalog's source files, so an edited catalog is
never checked against stale names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidRequest

MAX_FIELDS = 500
MAX_METADATA_KEY = 200
_KEY = rf"[^\x00-\x1f]{{1,{MAX_METADATA_KEY}}}"
METADATA_KEY = re.compile(rf"^{_KEY}\Z")
"""A ``metadata.<key>`` key: 1-200 characters, no control characters."""
METADATA_KEY_PATTERN = rf"^metadata\.{_KEY}$"
"""The same rule for a whole ``metadata.<key>`` name, as a JSON-schema ``pattern`` (the run
form's)."""


def invalid(message: str, key: str, **details: Any) -> InvalidRequest:
    """An ``InvalidRequest`` with a stable key and details (the API's 400 body)."""
    return InvalidRequest(message, key=key, details=details or None)


def allowed(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def unknown_object(name: object, known: Iterable[str]) -> InvalidRequest:
    """The refusal of an ``exported_object`` that names no entity."""
    names = sorted(known)
    return InvalidRequest(
        f"unknown exported_object {name!r}; allowed: {', '.join(names)}",
        key="unknown_exported_object",
        details={"allowed": names},
    )


@dataclass(frozen=True)
class EntityNames:
    """An entity's names, as a request uses them."""

    name: str
    plural: str
    fields: tuple[str, ...]
    default_fields: tuple[str, ...]
    sort_keys: tuple[str, ...]
    default_order: str
    metadata: bool
    """Whether ``metadata.<key>`` names a field (the entity has a metadata column)."""

    def check_fields(self, fields: Sequence[Any] | None) -> tuple[str, ...]:
        """The fields to export (the defaults for None), or ``InvalidRequest`` naming the
        first problem: empty, too many, not a string, listed twice, unknown, bad metadata key."""
        if fields is None:
            return self.default_fields
        if not fields:
            defaults = ", ".join(self.default_fields)
            raise invalid(
                f"fields is empty: leave it out for the defaults ({defaults})", "invalid_fields"
            )
        if len(fields) > MAX_FIELDS:
            raise invalid(f"too many fields ({len(fields)} > {MAX_FIELDS})", "invalid_fields")
        seen: set[str] = set()
        for name in fields:
            if not isinstance(name, str):
                raise invalid(f"field names must be strings, got {name!r}", "invalid_fields")
            if name in seen:
                raise invalid(f"field {name!r} is listed twice", "duplicate_field", field=name)
            seen.add(name)
            if name in self.fields:
                continue
            if name.startswith("metadata.") and self.metadata:
                if METADATA_KEY.match(name.removeprefix("metadata.")):
                    continue
                raise invalid(f"invalid metadata key in {name!r}", "invalid_field", field=name)
            raise invalid(
                f"unknown field {name!r} for {self.name}; allowed: {allowed(self.fields)}"
                + (", metadata.<key>" if self.metadata else ""),
                "unknown_field",
                field=name,
                allowed=sorted(self.fields),
            )
        return tuple(fields)

    def check_order(self, order: Any) -> tuple[str, bool]:
        """The sort key and whether it is descending (the default order for None or ""), or
        ``InvalidRequest``."""
        raw = self.default_order if order is None or order == "" else order
        if not isinstance(raw, str):
            raise invalid(
                f"order must be a string such as '-created_at', got {raw!r}", "invalid_order"
            )
        descending = raw.startswith("-")
        name = raw[1:] if descending else raw.lstrip("+")
        if name not in self.sort_keys:
            raise invalid(
                f"cannot order {self.name} exports by {raw!r}; allowed: "
                f"{allowed(self.sort_keys)} (prefix '-' for descending)",
                "invalid_order",
                order=raw,
                allowed=sorted(self.sort_keys),
            )
        return name, descending


def resolve(names: Mapping[str, EntityNames], exported_object: str) -> EntityNames:
    """The entity an ``exported_object`` (singular or plural) names, or ``InvalidRequest``."""
    for entity in names.values():
        if exported_object in (entity.name, entity.plural):
            return entity
    raise unknown_object(exported_object, names)


CATALOG_SOURCES = ("entities", "core/names.py")
"""What the names of the catalog are made from (folders: their ``*.py``), relative to the
folder that holds the ``core`` package."""


def catalog_digest(root: Path | None = None) -> str:
    """A digest of the catalog's source files: any edit gives another."""
    root = root or Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for source in CATALOG_SOURCES:
        path = root / source
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def names_path(cache: Path, digest: str | None = None) -> Path:
    return cache / f"entity-names-{digest or catalog_digest()}.json"


def save_names(cache: Path, names: Iterable[EntityNames]) -> Path | None:
    """Keep the catalog's names under ``cache`` for ``load_names``; None if the folder cannot
    be written (the CLI then simply checks with the catalog, as before)."""
    path = names_path(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps([asdict(n) for n in names]))
        os.replace(partial, path)  # a reader never sees half a file
    except OSError:
        return None
    return path


def _names_from_json(saved: dict[str, Any]) -> EntityNames:
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    return EntityNames(**values)


def load_names(cache: Path) -> dict[str, EntityNames] | None:
    """The names saved for the catalog as its sources are now, by entity name; None if there
    are none (never saved, the catalog changed since, or unreadable)."""
    try:
        saved = json.loads(names_path(cache).read_text())
        names = [_names_from_json(n) for n in saved]
    except (OSError, ValueError, TypeError):
        return None
    return {n.name: n for n in names}
