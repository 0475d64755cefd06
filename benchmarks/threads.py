"""``--threads N`` for scripts that must set thread counts before NumPy loads its pools.

Imports nothing but the standard library, so a script can call
:func:`limit_threads_from_argv` before its own ``import numpy``.
"""

import os

#: The thread-pool variables of OpenMP (native kernels), OpenBLAS / MKL (NumPy) and numba.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def limit_threads_from_argv(argv):
    """Set every :data:`THREAD_VARIABLES` to N when ``argv`` holds ``--threads N`` or ``--threads=N``."""
    for i, a in enumerate(argv):
        if a.startswith("--threads"):
            n = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            if n.isdigit():
                for var in THREAD_VARIABLES:
                    os.environ[var] = n
