#!/usr/bin/env bash
# Installs the Debian packages noisy needs, and only those missing.
# Idempotent: a second run checks dpkg's database and returns in well under 2 s.
set -euo pipefail

PACKAGES=(
  pkg-config
  liblmdb-dev lmdb-utils
  libpng-dev zlib1g-dev
  libjpeg-dev
  libopenblas-dev
  python3-numpy python3-pil python3-lmdb python3-jsonschema
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
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "bootstrap: done"
