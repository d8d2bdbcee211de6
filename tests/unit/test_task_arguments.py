"""What the pipeline hands its Prefect tasks: the objects themselves, never walked by Prefect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.utilities.collections import visit_collection
from prefect.utilities.engine import collect_task_run_inputs_sync, resolve_to_final_result

from flows.pipeline import _as_is


class Watched(list[int]):
    """A list that counts how often it is iterated (Prefect's walk iterates lists)."""

    iterations = 0

    def __iter__(self) -> Any:
        type(self).iterations += 1
        return super().__iter__()


@dataclass
class Argument:
    items: Watched = field(default_factory=lambda: Watched([1, 2, 3]))


def _prefects_two_walks(value: Any) -> Any:
    """What Prefect's task engine does with each argument of a task call: collect its inputs
    (``_create_task_run_locally``), then resolve it (``_resolve_parameters``)."""
    inputs = collect_task_run_inputs_sync(value)
    assert inputs == set()
    return visit_collection(
        value,
        visit_fn=resolve_to_final_result,
        return_data=True,
        max_depth=-1,
        remove_annotations=True,
        context={"parameter_name": "plan"},
    )


def test_a_task_gets_the_very_object_and_prefect_does_not_walk_into_it() -> None:
    Watched.iterations = 0
    argument = Argument()

    assert _prefects_two_walks(_as_is(argument)) is argument
    assert Watched.iterations == 0

    plain = _prefects_two_walks(argument)  # unmarked: walked field by field, twice
    assert plain == argument and Watched.iterations >= 2
