#!/usr/bin/env bash
# Idempotent set-up: Debian build/test dependencies and the Python virtual
# environment with the pinned test oracles. Safe to run any number of times;
# does nothing when everything is already there.
#
#   scripts/setup.sh            build deps + test venv (.venv: ai-edge-litert, numpy, pytest)
#   scripts/setup.sh --tf       also the fixture/benchmark venv (.venv-tf: tensorflow-cpu)
#   scripts/setup.sh --build-only   only the Debian packages needed to build and run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

want_tf=0
build_only=0
for a in "$@"; do
  case "$a" in
    --tf) want_tf=1 ;;
    --build-only) build_only=1 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 1 ;;
  esac
done

log() { printf 'setup: %s\n' "$*" >&2; }

# ---- Debian packages -------------------------------------------------------
pkgs=(build-essential cmake pkg-config zlib1g-dev libcmocka-dev libomp-dev dataset-fashion-mnist)
if [ "$build_only" = 0 ]; then
  pkgs+=(clang libclang-rt-dev valgrind python3 python3-venv)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "$build_only" = 1 ] && exit 0

# ---- Python virtual environments --------------------------------------------
# A venv is (re)built when its requirements file changed (stamp = sha256).
make_venv() {
  local dir=$1 req=$2
  local want have=""
  want=$(sha256sum "$req" | cut -d' ' -f1)
  [ -f "$dir/.stamp" ] && have=$(cat "$dir/.stamp")
  if [ "$want" = "$have" ] && [ -x "$dir/bin/python" ]; then
    return 0
  fi
  log "creating $dir from $req"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$dir/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$dir/.stamp"
}

make_venv "${MOPT_VENV:-$ROOT/.venv}" tests/requirements.txt
if [ "$want_tf" = 1 ]; then
  make_venv "${MOPT_TF_VENV:-$ROOT/.venv-tf}" tests/requirements-fixtures.txt
fi
