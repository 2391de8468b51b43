#!/usr/bin/env bash
# Stages target/image-root for the Dockerfile: the release stock-host, the shared libraries it links
# (as `ldd` reports them, at the same paths), and the release component. The result runs on `scratch`.
set -euo pipefail
cd "$(dirname "$0")/.."

host=target/release/stock-host
component=target/wasm32-wasip2/release/stock_component.wasm
root=target/image-root
for file in "$host" "$component"; do
  [ -f "$file" ] || { echo "stage-image: $file is missing; run make build first" >&2; exit 1; }
done
rm -rf "$root"
mkdir -p "$root/component"
cp "$host" "$root/stock-host"
# Debug info is not needed to run and is most of the binary; symbols stay for readable backtraces.
command -v strip >/dev/null && strip --strip-debug "$root/stock-host"
cp "$component" "$root/component/stock_component.wasm"
# The embedded API docs bundle's licence travels with the binary that embeds it.
mkdir -p "$root/licenses" && cp docs/scalar-LICENSE "$root/licenses/scalar-LICENSE"
# Every library ldd resolves, plus the dynamic loader itself.
ldd "$host" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo "stage-image: $(du -sh "$root" | cut -f1) in $root ($(find "$root" -type f | wc -l) files)"
