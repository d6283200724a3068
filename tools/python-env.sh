#!/usr/bin/env bash
# Builds the Python environment the tests use: .venv/ in the checkout (ignored by git),
# from Debian's /usr/bin/python3 and pinned PyPI versions. Idempotent: a finished
# environment whose pins match is left alone (.venv/.ready holds the pins it was made from).
#
#   tools/python-env.sh          build it now (a few minutes the first time)
#   tools/python-env.sh --wait   wait for a build another process is running
#
# torch comes from PyPI with its CUDA libraries (about 5 GB installed, a few minutes):
# PyPI's torchvision links against them, so a CPU-only torch cannot stand in. ray[data]
# (with pyarrow and pandas) runs the Ray labelling example; lmdb lets noisy.open_store
# and the Ray datasource read stores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
pins=(
  "numpy==2.4.6"
  "pillow==13.0.0"
  "torch==2.14.1"
  "torchvision==0.29.2"
  "timm==1.0.31"
  "lmdb==1.7.5"
  "ray[data]==2.60.0"
)
# The reference corruptions (issue 17): imagecorruptions 1.1.2, the ImageNet-C code as
# packaged on PyPI, with the last dependencies it runs on (it calls numpy's np.float_,
# pkg_resources and scikit-image's gaussian(multichannel=...); the tests map that last
# argument to channel_axis, which scikit-image 0.20 renamed it to). Its own environment,
# .venv-ic/, so that the main one keeps current numpy. About 200 MB, under a minute.
ic_pins=(
  "numpy==1.26.4"
  "scipy==1.11.4"
  "scikit-image==0.20.0"
  "opencv-python-headless==4.8.1.78"
  "pillow==10.4.0"
  "setuptools==69.5.1"
)
ic_package="imagecorruptions==1.1.2"   # installed without its dependencies: it asks for opencv-python, with a GUI
want=$(printf '%s\n' "${pins[@]}" "${ic_pins[@]}" "$ic_package")
lock="$root/.venv.lock"

ready() { [[ -f "$venv/.ready" ]] && [[ "$(cat "$venv/.ready")" == "$want" ]]; }

if [[ "${1:-}" == "--wait" ]]; then
  exec 9>"$lock"; flock 9   # returns once no build holds the lock
  ready && exit 0
  echo "python-env: no finished environment (see .venv.log)" >&2; exit 1
fi

exec 9>"$lock"
flock 9
if ready; then echo "python-env: .venv ready"; exit 0; fi
echo "python-env: building .venv (${pins[*]})"
rm -rf "$venv" "$root/.venv-ic"
/usr/bin/python3 -m venv "$venv"
PIP_FIND_LINKS= "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "${pins[@]}"
echo "python-env: building .venv-ic (${ic_pins[*]} $ic_package)"
/usr/bin/python3 -m venv "$root/.venv-ic"
PIP_FIND_LINKS= "$root/.venv-ic/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir "${ic_pins[@]}"
PIP_FIND_LINKS= "$root/.venv-ic/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps "$ic_package"
printf '%s' "$want" > "$venv/.ready"
echo "python-env: done"
