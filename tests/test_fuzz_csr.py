"""Malformed CSR structures and dense operands against every op and CPU backend.

The cases (tests/fuzz_csr.py) run in one child process per backend, so that
a kernel that reads or writes out of bounds fails this test (a signal, or
garbage) instead of killing the test run. Every malformed input must give
a ValueError, and every valid one the dense oracle's answer, with the guard
cells around each ``out`` untouched.
"""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CPU_BACKENDS

RUNNER = Path(__file__).resolve().with_name("fuzz_csr.py")
# numba compiles the kernels' read-only specializations on a cold cache
TIMEOUT_S = 300
# The child may not allocate more than this (address space): an op that asks
# for absurd memory then fails here instead of taking the machine's memory.
CHILD_MEMORY = 4 << 30
# few threads, so that the address-space cap does not depend on the core count
CHILD_ENV = {"PYTHONFAULTHANDLER": "1", "NUMBA_NUM_THREADS": "2", "OMP_NUM_THREADS": "2",
             "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}


# The examples of issue 10, before the fix: sddmm wrote past ``out`` (numba, native), a column
# of 1e9 crashed spmm on all three backends, an exclude column of n_in + 1 went unnoticed.
ISSUE_EXAMPLES = ("struct/indptr_last_past_nnz_view/direct/sddmm",
                  "struct/column_1e9/direct/spmm", "struct/column_n_in_plus_1/direct/topk_cosine")


def _limit_memory():
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def _run(backend):
    proc = subprocess.run([sys.executable, str(RUNNER), backend], capture_output=True,
                          text=True, timeout=TIMEOUT_S, env=dict(os.environ, **CHILD_ENV),
                          preexec_fn=_limit_memory if os.name == "posix" else None)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = [line["done"] for line in lines if "done" in line]
    return proc, [line for line in lines if "id" in line], done


def _summary(records):
    counts = collections.Counter((r["op"], r["outcome"]) for r in records)
    return ", ".join(f"{op}: {n} {outcome}" for (op, outcome), n in sorted(counts.items()))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_malformed_inputs_give_value_errors(backend):
    proc, records, done = _run(backend)
    started = [line for line in proc.stderr.splitlines()  # case ids, then a crash's traceback
               if line.count("/") >= 2 and " " not in line]
    assert proc.returncode == 0, (f"the {backend} fuzz child died (exit {proc.returncode}) in "
                                  f"case {started[-1] if started else '(none)'}; stderr tail:\n"
                                  f"{proc.stderr[-3000:]}")
    assert done == [len(records)] and len(records) > 700  # every case ran...
    assert len({r["id"] for r in records}) == len(records)  # ...once
    wrong = [r for r in records
             if r["outcome"] != {"error": "ValueError", "ok": "ok"}[r["expect"]]]
    assert not wrong, (f"{len(wrong)} of {len(records)} cases on {backend} went wrong "
                       f"(first 10: {json.dumps(wrong[:10], indent=1)}); all: {_summary(records)}")
    outcomes = {r["id"]: r["outcome"] for r in records}
    assert all(outcomes[case] == "ValueError" for case in ISSUE_EXAMPLES)
    for r in records:  # a clear message: says what was expected, not an internal error
        if r["outcome"] == "ValueError":
            assert r["message"] and "numba" not in r["message"].lower(), r

