#!/usr/bin/env bash
# Fetches the one asset GET /docs needs: Scalar's standalone API-reference bundle, pinned.
# No npm here, so it comes from the PyPI wheel flask-openapi3-scalar, which ships
# @scalar/api-reference's dist/browser/standalone.js unmodified. Idempotent: the wheel is
# downloaded only when it is not in target/docs-assets/wheel yet, and nothing at all is
# fetched when target/docs-assets/scalar.standalone.js is already there with the pinned digest.
# Writes target/docs-assets/scalar.standalone.js (the host embeds/serves it as /docs/scalar.standalone.js).
# Run through `make docs-assets`. See docs/api-docs.md.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEEL_PKG=flask-openapi3-scalar
SCALAR_VERSION=1.44.15
# sha256 of flask_openapi3_scalar/templates/scalar/js/scalar.standalone.js in the 1.44.15 wheel.
SCALAR_SHA256=91ae672e1e5d96b0d708316ef7dd06d76afd712387ba31ed90b05837318b91c7
MEMBER=flask_openapi3_scalar/templates/scalar/js/scalar.standalone.js
OUT_DIR=target/docs-assets
WHEEL_DIR=$OUT_DIR/wheel
OUT=$OUT_DIR/scalar.standalone.js
LICENSE_FILE=docs/scalar-LICENSE

die() { echo "docs-assets: ERROR: $*" >&2; exit 1; }
sha256() { sha256sum "$1" | awk '{print $1}'; }
report() { echo "docs-assets: $OUT $(stat -c %s "$OUT") bytes sha256 $SCALAR_SHA256 (@scalar/api-reference $SCALAR_VERSION)"; }

# The committed licence file must carry both MIT notices (Scalar's and the wheel's).
[ -f "$LICENSE_FILE" ] || die "$LICENSE_FILE is missing: it holds the MIT licences of Scalar and $WHEEL_PKG and must ship with the bundle"
grep -q 'Copyright (c) 2023-present Scalar' "$LICENSE_FILE" || die "$LICENSE_FILE lacks Scalar's copyright notice"
grep -q 'Copyright (c) 2024 llc' "$LICENSE_FILE" || die "$LICENSE_FILE lacks $WHEEL_PKG's copyright notice"

if [ -f "$OUT" ] && [ "$(sha256 "$OUT")" = "$SCALAR_SHA256" ]; then
  report
  exit 0
fi

mkdir -p "$WHEEL_DIR"
shopt -s nullglob
find_wheel() { local w=("$WHEEL_DIR"/flask_openapi3_scalar-"$SCALAR_VERSION"-*.whl); wheel=${w[0]:-}; }
find_wheel
if [ -z "$wheel" ]; then
  echo "docs-assets: downloading $WHEEL_PKG==$SCALAR_VERSION from PyPI" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "$WHEEL_PKG==$SCALAR_VERSION" -d "$WHEEL_DIR" >&2 \
    || die "pip download of $WHEEL_PKG==$SCALAR_VERSION failed"
  find_wheel
  [ -n "$wheel" ] || die "pip left no flask_openapi3_scalar-$SCALAR_VERSION wheel in $WHEEL_DIR"
fi

# Extract the bundle (python's zipfile: unzip need not be installed) and check the wheel's licence metadata.
python3 - "$wheel" "$MEMBER" "$OUT.tmp" "$SCALAR_VERSION" <<'PY' || die "could not extract $MEMBER from $wheel"
import sys, zipfile
wheel, member, out, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    meta = z.read(f"flask_openapi3_scalar-{version}.dist-info/METADATA").decode()
    if "License: MIT" not in meta:
        sys.exit(f"{wheel}: METADATA no longer says 'License: MIT'; review docs/scalar-LICENSE")
    data = z.read(member)
if f"@scalar/api-reference@{version}".encode() not in data[:4096]:
    sys.exit(f"{member}: header does not name @scalar/api-reference@{version}")
with open(out, "wb") as f:
    f.write(data)
PY

got=$(sha256 "$OUT.tmp")
if [ "$got" != "$SCALAR_SHA256" ]; then
  rm -f "$OUT.tmp" "$OUT"
  {
    echo "docs-assets: ERROR: sha256 mismatch for $MEMBER from $wheel"
    echo "  expected $SCALAR_SHA256"
    echo "  got      $got"
    echo "  The pinned Scalar bundle changed. Do not update the digest blindly: review the new bundle"
    echo "  (configuration options in docs/api-docs.md, licence) before pinning a new value in $0."
    echo "  If the cached wheel is damaged instead, remove $WHEEL_DIR and run this again."
  } >&2
  exit 1
fi
mv -f "$OUT.tmp" "$OUT"
report
