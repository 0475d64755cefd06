"""Build script: the optional pybind11 extension ``ctre_sparse._native``.

The extension is optional. With ``CTRE_SPARSE_NO_EXT=1`` it is not built; if
its build fails, the failure is reported and the package installs without it
(the numba backend takes over and says so once through ``logging``).
Flags are portable (no ``-march=native``); the kernels pick AVX2/AVX-512 code
paths at run time.
"""

import glob
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _native_extension():
    try:
        from pybind11.setup_helpers import Pybind11Extension
    except ImportError:  # pybind11 is in build-system.requires; only a bare setup.py call lacks it
        return None
    sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp"))) + ["csrc/bindings.cpp"]
    if not os.path.exists(os.path.join(HERE, "csrc", "bindings.cpp")):
        return None
    openmp = ["-fopenmp"] if sys.platform != "darwin" else []
    return Pybind11Extension(
        "ctre_sparse._native",
        sources,
        include_dirs=["csrc"],
        depends=sorted(glob.glob(os.path.join("csrc", "cpu", "*.h"))),  # rebuild on header edits
        cxx_std=17,
        extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math"] + openmp,
        extra_link_args=openmp,
    )


class OptionalBuildExt(build_ext):
    """Build the native extension, but never fail the install because of it."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, OpenMP missing, ...
            self._report(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._report(exc)

    @staticmethod
    def _report(exc):
        sys.stderr.write(
            "WARNING: ctre_sparse native extension could not be built "
            f"({type(exc).__name__}: {exc}); the numba backend will be used.\n")


class BuildPyWithCuda(build_py):
    """Ship the CUDA sources inside the package (compiled on first use by CuPy)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "ctre_sparse", "cuda")
        sources = glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cu")) + \
            glob.glob(os.path.join(HERE, "csrc", "cuda", "*.cuh"))
        if sources:
            os.makedirs(target, exist_ok=True)
            for src in sources:
                shutil.copy2(src, target)


ext_modules = []
if os.environ.get("CTRE_SPARSE_NO_EXT", "0") not in ("1", "true", "yes"):
    ext = _native_extension()
    if ext is not None:
        ext_modules.append(ext)

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithCuda})
