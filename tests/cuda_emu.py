"""Run the real CUDA kernel sources on the CPU: a small emulator for the tests.

The text NVRTC gets (:func:`ctre_sparse.backends.cuda.load_source`) is
compiled by g++ after ``cuda_emu.h`` (CUDA builtins, warp shuffles and
``__syncthreads`` on cooperative fibers), with one ``extern "C"`` launcher
per name expression. :class:`RawModule` stands in for ``cupy.RawModule``:
``get_function(name)(grid, block, args, shared_mem=0)`` follows CuPy's
argument rules (arrays pass their data pointer, NumPy scalars their bytes,
Python ``int`` -> int64, ``float`` -> float64) and checks every argument
against the kernel's parameter types, which a GPU would not do (a wrong
scalar type there silently reads garbage). :class:`NumpyAsCupy` is NumPy
posing as CuPy for ``ctre_sparse.backends.cuda`` with this ``RawModule``.

What this cannot check: the memory model (execution here is sequentially
consistent), real warp scheduling, FMA contraction and ``-ftz`` (g++ does
neither), speed. See docs/gpu.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import types
from pathlib import Path

import numpy as np

from ctre_sparse.backends import cuda as cuda_backend

HEADER = Path(__file__).resolve().with_name("cuda_emu.h")
CXX = shutil.which("g++") or shutil.which("c++")
FLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden",
         "-Wno-unknown-pragmas", "-U_FORTIFY_SOURCE")
ASAN_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer")
#: Set in the memcheck subprocess (see :func:`run_memcheck`): kernels built with ASan.
SANITIZE = os.environ.get("CTRE_CUDA_EMU_ASAN") == "1"
CACHE_DIR = Path(os.environ.get("CTRE_CUDA_EMU_CACHE") or
                 Path(tempfile.gettempdir()) / f"ctre_cuda_emu-{os.getuid()}")

#: C type of a kernel parameter (as the header spells it) -> NumPy dtype
CTYPE_DTYPES = {
    "bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "unsigned int": np.uint32,
    "long": np.int64, "unsigned long": np.uint64, "long long": np.int64,
    "unsigned long long": np.uint64, "float": np.float32, "double": np.float64,
}

_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?"
                     r"((?:unsigned\s+)?(?:char|short|int|long long|float|double))\s+"
                     r"(\w+)\s*\[\s*\]\s*;")
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_libs = {}
_libs_lock = threading.Lock()

#: How the blocks' warps are interleaved. Lanes of a warp meet at every shuffle
#: whatever the policy; the policies change how far warps run ahead of one
#: another between barriers, so a missing __syncthreads shows up under some.
#: round_robin / reverse: one step of each warp in turn (0, 1, ... or n-1, ...);
#: warp_greedy(_reverse): the lowest (highest) warp runs until it blocks at
#: __syncthreads or exits; random: a seeded random warp, lanes in random order.
SCHEDULES = ("round_robin", "reverse", "warp_greedy", "warp_greedy_reverse", "random")
_schedule = ["round_robin", 0]


class EmulationError(RuntimeError):
    """A kernel failed under the emulator (divergence, deadlock, bad launch or arguments)."""


def unavailable_reason():
    """Why kernels cannot be emulated here (no g++, no ucontext), or None."""
    if CXX is None:
        return "no C++ compiler (g++/c++) on PATH"
    if not sys.platform.startswith("linux"):
        return f"the emulator needs Linux ucontext/_setjmp (platform {sys.platform})"
    probe = "#include <ucontext.h>\nint main() { ucontext_t u; return getcontext(&u); }\n"
    proc = subprocess.run([CXX, "-fsyntax-only", "-x", "c++", "-"], input=probe, text=True,
                          capture_output=True)
    if proc.returncode:
        return f"ucontext.h not usable with {CXX}: {proc.stderr.strip()[:300]}"
    return None


# --------------------------------------------------------------- compilation
def emulation_source(code, names, filename="kernel.cu"):
    """The C++ text g++ compiles: header, the kernel text, one launcher per name."""
    body = _SHARED.sub(lambda m: f"{m.group(1)}* const {m.group(2)} = "
                                 f"reinterpret_cast<{m.group(1)}*>(::emu::dynamic_smem());", code)
    if "__shared__" in _COMMENTS.sub("", body):
        raise EmulationError("the kernel text uses a __shared__ form the emulator does not "
                             "handle (only 'extern __shared__ [__align__(n)] T name[];' inside "
                             "a kernel)")
    out = [f'#include "{HEADER}"', f'#line 1 "{filename}"', body, "", "// emulator launchers"]
    export = 'extern "C" __attribute__((visibility("default")))'
    for i, name in enumerate(names):
        out.append(f"{export} int emu_launch_{i}(const unsigned* g, const unsigned* b, "
                   f"size_t smem, void** args) {{ return ::emu::launch(&{name}, g, b, smem, "
                   f"args); }}")
        out.append(f"{export} const char* emu_signature_{i}() {{ return "
                   f"::emu::signature(&{name}); }}")
    out.append(f"{export} const char* emu_last_error() {{ return ::emu::last_error(); }}")
    out.append(f"{export} void emu_set_schedule(int policy, unsigned long long seed) {{ "
               f"::emu::set_schedule(policy, seed); }}")
    return "\n".join(out) + "\n"


def _compiler_id():
    if not hasattr(_compiler_id, "value"):
        proc = subprocess.run([CXX, "--version"], capture_output=True, text=True)
        _compiler_id.value = CXX + proc.stdout
    return _compiler_id.value


def library_path(code, names, sanitize=False):
    """Compile (or find in the cache) the library for ``code``; return its path."""
    source = emulation_source(code, names)
    flags = FLAGS + (ASAN_FLAGS if sanitize else ())
    key = hashlib.sha256("\0".join((_compiler_id(), " ".join(flags), HEADER.read_text(),
                                    source)).encode()).hexdigest()[:20]
    path = CACHE_DIR / f"emu_{key}{'_asan' if sanitize else ''}.so"
    if path.is_file():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=CACHE_DIR)
    os.close(fd)
    src = tmp[:-3] + ".cpp"
    try:
        Path(src).write_text(source)
        proc = subprocess.run([CXX, *flags, "-o", tmp, src], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode:
            raise EmulationError(f"g++ failed on the emulated kernels:\n{proc.stderr[-6000:]}")
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, src):
            if os.path.exists(leftover):
                os.remove(leftover)
    return path


def compile_code(code, names):
    """The loaded library (ctypes.CDLL) for ``code`` with launchers for ``names``."""
    path = library_path(code, names, sanitize=SANITIZE)
    with _libs_lock:
        if path not in _libs:
            lib = ctypes.CDLL(str(path))
            lib.emu_last_error.restype = ctypes.c_char_p
            lib.emu_set_schedule.argtypes = (ctypes.c_int, ctypes.c_ulonglong)
            lib.emu_set_schedule(SCHEDULES.index(_schedule[0]), _schedule[1])
            _libs[path] = lib
        return _libs[path]


def set_schedule(policy, seed=0):
    """Use ``policy`` (one of :data:`SCHEDULES`) for every launch from now on."""
    if policy not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {policy!r}")
    with _libs_lock:
        _schedule[:] = [policy, int(seed)]
        for lib in _libs.values():
            lib.emu_set_schedule(SCHEDULES.index(policy), int(seed))


@contextlib.contextmanager
def schedule(policy, seed=0):
    """Context manager: launches inside it use ``policy``; the previous one is restored."""
    previous = tuple(_schedule)
    set_schedule(policy, seed)
    try:
        yield
    finally:
        set_schedule(*previous)


def compile_stem(stem):
    """The library for ``csrc/cuda/<stem>.cu``, every instantiation the backend uses."""
    return compile_code(cuda_backend.load_source(stem), cuda_backend.name_expressions(stem))


def compile_all(stems=None, workers=2):
    """Compile several stems in parallel (g++ runs outside the GIL); return {stem: lib}."""
    stems = sorted(cuda_backend.KERNELS) if stems is None else list(stems)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        return dict(zip(stems, pool.map(compile_stem, stems)))


# ------------------------------------------------------------------- kernels
def _dim3(value, what):
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d < 0 or d >= 1 << 32 for d in dims):
        raise ValueError(f"{what} dimensions must fit an unsigned int, got {value!r}")
    return (ctypes.c_uint * 3)(*dims)


def _parse_signature(sig):
    params = []
    for entry in sig.split(";") if sig else []:
        pointer = entry.endswith("*")
        base = entry.rstrip("*").strip()
        const = base.startswith("const ")
        base = base[6:] if const else base
        if base not in CTYPE_DTYPES:
            raise EmulationError(f"unsupported kernel parameter type {entry!r}")
        params.append((entry, pointer, const, np.dtype(CTYPE_DTYPES[base])))
    return params


class EmulatedKernel:
    """A kernel with CuPy's ``RawKernel`` call signature, run by the emulator."""

    def __init__(self, lib, index, name):
        self.name = name
        self._lib = lib
        self._launch = getattr(lib, f"emu_launch_{index}")
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_void_p)
        sig = getattr(lib, f"emu_signature_{index}")
        sig.restype = ctypes.c_char_p
        self.params = _parse_signature(sig().decode())
        self.code = None  # set by RawModule, for the source line in error messages

    def _fail(self, msg, exc=TypeError):
        raise exc(f"{self.name}: {msg}")

    def _pack(self, i, arg, param):
        ctype, pointer, const, dtype = param
        where = f"argument {i} ({ctype})"
        if pointer:
            if not isinstance(arg, np.ndarray):
                self._fail(f"{where} needs an array of {dtype}, got {type(arg).__name__}")
            if arg.dtype != dtype:
                self._fail(f"{where} needs an array of {dtype}, got one of {arg.dtype}")
            if not arg.flags.c_contiguous:
                self._fail(f"{where}: the array is not C-contiguous (a kernel reads it as if "
                           f"it were; strides {arg.strides})", ValueError)
            if not const and not arg.flags.writeable:
                self._fail(f"{where}: the kernel may write to it, the array is read-only",
                           ValueError)
            return ctypes.c_void_p(arg.ctypes.data)
        if isinstance(arg, np.ndarray):
            self._fail(f"{where} is a scalar, got an array")
        if isinstance(arg, np.generic):
            value = arg
        elif isinstance(arg, int):  # CuPy's rule, bool included (a subclass of int)
            value = np.int64(arg)
        elif isinstance(arg, float):
            value = np.float64(arg)
        else:
            self._fail(f"{where}: unsupported argument type {type(arg).__name__}")
        if value.dtype != dtype:
            self._fail(f"{where} needs a {dtype} scalar, got {value.dtype} ({arg!r}); on a GPU "
                       f"the kernel would read {dtype.itemsize} bytes from a "
                       f"{value.dtype.itemsize}-byte argument")
        return np.ctypeslib.as_ctypes_type(dtype)(value.item())

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if not isinstance(args, (tuple, list)):
            self._fail(f"args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            self._fail(f"takes {len(self.params)} arguments "
                       f"({', '.join(p[0] for p in self.params)}), got {len(args)}")
        storage = [self._pack(i, a, p) for i, (a, p) in enumerate(zip(args, self.params))]
        ptrs = (ctypes.c_void_p * max(1, len(storage)))(*[ctypes.addressof(s) for s in storage])
        g, b = _dim3(grid, "grid"), _dim3(block, "block")
        if self._launch(g, b, int(shared_mem), ptrs):
            raise EmulationError(f"{self.name}: {self._explain(self._lib.emu_last_error())}")

    def _explain(self, raw):
        msg = raw.decode(errors="replace")
        lines = (self.code or "").splitlines()
        for n in sorted({int(m) for m in re.findall(r"line (\d+)", msg)}):
            if 0 < n <= len(lines):
                msg += f"\n  line {n}: {lines[n - 1].strip()}"
        return msg


class RawModule:
    """Stands in for ``cupy.RawModule``: the code is compiled for the emulator."""

    def __init__(self, code=None, options=(), name_expressions=None, **kwargs):
        if code is None:
            raise ValueError("the emulated RawModule needs code= (no path=/cubin)")
        self.code, self.options = code, tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        self._lib = compile_code(code, self.name_expressions)
        self._kernels = {}

    def get_function(self, name):
        if name not in self.name_expressions:
            raise KeyError(f"{name!r} is not one of the module's name_expressions")
        if name not in self._kernels:
            kernel = EmulatedKernel(self._lib, self.name_expressions.index(name), name)
            kernel.code = self.code
            self._kernels[name] = kernel
        return self._kernels[name]


class NumpyAsCupy:
    """NumPy posing as the slice of CuPy the cuda backend uses, kernels emulated.

    ``argsort``/``sort`` are stable, as CuPy documents them; ``RawModule`` is
    the emulator's; ``cuda.Device().id`` is 0.
    """

    RawModule = RawModule
    cuda = types.SimpleNamespace(Device=lambda *a: types.SimpleNamespace(id=0))

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def argsort(a):
        return np.argsort(a, kind="stable")

    @staticmethod
    def sort(a):
        return np.sort(a, kind="stable")


# ------------------------------------------------------------------ memcheck
def libasan_path():
    """The compiler's libasan.so (to LD_PRELOAD into Python), or None."""
    if CXX is None:
        return None
    proc = subprocess.run([CXX, "-print-file-name=libasan.so"], capture_output=True, text=True)
    found = proc.stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


def compile_all_sanitized(workers=2):
    """Build the ASan libraries of every stem in this process (the subprocess finds them)."""
    def build(stem):
        return library_path(cuda_backend.load_source(stem), cuda_backend.name_expressions(stem),
                            sanitize=True)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(build, sorted(cuda_backend.KERNELS)))


def run_memcheck(script, timeout=300):
    """Run Python ``script`` in a subprocess with ASan preloaded and the kernels built with
    ``-fsanitize=address``: an out-of-bounds access to a NumPy buffer (malloc'd, so
    redzones apply) or to the dynamic shared memory aborts it with an ASan report.
    Returns the ``subprocess.CompletedProcess``."""
    tests_dir = str(Path(__file__).resolve().parent)
    env = dict(os.environ, LD_PRELOAD=libasan_path(), CTRE_CUDA_EMU_ASAN="1",
               ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1",
               CTRE_CUDA_EMU_CACHE=str(CACHE_DIR),
               PYTHONPATH=os.pathsep.join([tests_dir, str(Path(tests_dir).parent),
                                           os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)
