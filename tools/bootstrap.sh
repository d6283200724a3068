#!/usr/bin/env bash
# Installs the Debian packages noisy needs, and only those missing, then starts
# building the tests' Python environment (.venv: torch, torchvision, timm, Pillow
# from PyPI; tools/python-env.sh) in the background, so that `noisy demo` never
# waits for it. The tests wait for that build (or run it) before they use torch.
# Idempotent: a second run checks dpkg's database and returns in well under 2 s.
set -euo pipefail

PACKAGES=(
  pkg-config
  liblmdb-dev lmdb-utils
  libpng-dev zlib1g-dev libwebp-dev
  libjpeg-dev
  libopenblas-dev
  python3-numpy python3-pil python3-lmdb python3-jsonschema
  python3-venv             # for .venv (tools/python-env.sh)
  python3-setuptools python3-pip   # pip install ./python, offline (PyTorchExampleTests)
  dataset-fashion-mnist
  python-matplotlib-data   # grace_hopper.jpg: a photograph for the augmentation parity tests
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#PACKAGES[@]} packages present"
else
  echo "bootstrap: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "bootstrap: done"
fi

# The Python environment for the tests, in the background (a few minutes and about
# 5.5 GB the first time; nothing when it is already built). Its log: .venv.log.
cd "$(dirname "$0")/.."
if [[ "${NOISY_NO_VENV:-}" != 1 ]]; then
  nohup setsid tools/python-env.sh > .venv.log 2>&1 < /dev/null &
  echo "bootstrap: building the tests' Python environment in the background (.venv.log)"
fi
