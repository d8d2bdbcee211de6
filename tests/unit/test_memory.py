"""Arrow's allocator options: set before pyarrow loads, in every process that runs flows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.memory import ARROW_ALLOCATOR_ENV, tune_arrow_allocator


def test_the_options_are_defaults_that_the_environment_can_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ARROW_ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    tune_arrow_allocator()
    assert os.environ["MIMALLOC_ARENA_EAGER_COMMIT"] == "0"
    assert os.environ["MIMALLOC_PURGE_DELAY"] == "250"  # the operator's value stays


CLI = """
import sys
from exportflow.cli import main
sys.argv = ["exportflow", "--help"]
try:
    main()
except SystemExit:
    pass
"""


@pytest.mark.parametrize("entry", ["import flows", CLI], ids=["flows", "cli"])
def test_mimalloc_runs_with_them_once_a_flow_process_imports_pyarrow(entry: str) -> None:
    """mimalloc reads its options when pyarrow first loads: importing the flows package (what a
    worker's flow run and the warm parent import first) has set them by then, and so has the
    CLI's ``main`` before any command imports pyarrow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    env["MIMALLOC_VERBOSE"] = "1"
    code = f"{entry}\nimport pyarrow as pa\npa.array(list(range(1000)))\n"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "option 'arena_eager_commit': 0" in done.stderr
    assert "option 'purge_delay': 0" in done.stderr
