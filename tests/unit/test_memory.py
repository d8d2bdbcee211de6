"""Arrow's allocator options: set before pyarrow loads, in every process that runs flows."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.memory import ARROW_ALLOCATOR_ENV, tune_allocators


def test_the_options_are_defaults_that_the_environment_can_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ARROW_ALLOCATOR_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    tune_allocators()
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


GLIBC_PROBE = """
import ctypes, sys
{setup}
libc = ctypes.CDLL(None)
if not hasattr(libc, "gnu_get_libc_version"):
    print("no glibc"); sys.exit(0)

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(8 << 20))  # glibc's own rule would now raise its threshold to 8 MB
before = libc.mallinfo2().hblks
block = libc.malloc(512 << 10)
print("mapped" if libc.mallinfo2().hblks > before else "heap")
libc.free(block)
"""


@pytest.mark.parametrize(
    ("setup", "expected"),
    [("from core.memory import tune_allocators; tune_allocators()", "mapped"), ("", "heap")],
    ids=["tuned", "glibc-default"],
)
def test_large_blocks_keep_their_own_mappings_after_a_larger_one_was_freed(
    setup: str, expected: str
) -> None:
    """With the threshold pinned, a 512 KB block is still mapped (and given back when freed)
    after an 8 MB one was freed; by glibc's default rule it would come from a heap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", GLIBC_PROBE.format(setup=setup)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "no glibc":
        pytest.skip("not a glibc system")
    assert done.stdout.strip() == expected
