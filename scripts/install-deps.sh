#!/usr/bin/env bash
# Installs the Debian 12 packages Outlast builds and tests with. Idempotent and quick when
# everything is present (one dpkg query, no network). Needs root or sudo to install.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libtorrent-rasterbar-dev libsodium-dev liblmdb-dev
  libboost-dev libboost-program-options-dev libboost-system-dev
  nlohmann-json3-dev catch2
  curl
  chromium  # the browser tier of the tests (site isolation in a real browser)
  libxml2-utils  # xmllint: the Atom feed test
  clang libclang-rt-14-dev  # libFuzzer targets (scripts/fuzz.sh)
  python3  # make demo
)

# `--bench`: also what the benchmarks compare against.
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(wrk nginx-light openssl aria2)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
