#!/usr/bin/env bash
# Fill ./.gpu_wheels with the test dependencies a GPU machine may lack (it has no internet),
# so that benchmarks/gpu_session.sh can install them offline. Run on a machine with a package
# registry, then carry .gpu_wheels along with the device call (it is git-ignored).
#
#   bash benchmarks/gpu_wheels.sh             # Python 3.10, 3.11, 3.12
#   bash benchmarks/gpu_wheels.sh 3.12        # only the device's Python version (smaller)
#
# Pure-Python wheels once; scikit-learn, hypothesis and tomli per Python version (about
# 14 MB per version).
set -eu
cd "$(dirname "$0")/.."
DEST=.gpu_wheels
mkdir -p "$DEST"
VERSIONS=${*:-3.10 3.11 3.12}
python -m pip download -q --only-binary=:all: --no-deps -d "$DEST" \
    pybind11 sortedcontainers attrs pytest pluggy iniconfig packaging joblib threadpoolctl \
    exceptiongroup
for v in $VERSIONS; do
    python -m pip download -q --only-binary=:all: --no-deps -d "$DEST" \
        --python-version "$v" --platform manylinux2014_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        scikit-learn hypothesis tomli
done
du -sh "$DEST"
