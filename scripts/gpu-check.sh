#!/usr/bin/env bash
# The WebGPU check on a GPU machine with no Node, no npm and no network, from
# what scripts/pack-gpu-check.sh put in .gpu-pack/ (carried there): unpacks
# Node and Dawn, installs the Vulkan loader if the machine has none, picks the
# NVIDIA Vulkan driver when present, makes the synthetic models with
# synth-model.mjs (in parallel, while the goldens run), then runs the runner
# (scripts/gpu-check/runner.ts). See BENCHMARKS.md, "GPU (WebGPU)".
#
# Environment:
#   RAMA_GPU_MODELS   models to measure (default s15,s110,s110q,tl1bq,l7bq; "" for the goldens only;
#                     s15q too). Making l7bq (7 GB) takes minutes: the runner measures the others meanwhile.
#   RAMA_GPU_WORK     scratch folder (default /tmp/rama-gpu): Node, the models
#   OUT               where the results go (the device tool's output folder; default RAMA_GPU_WORK)
#   RAMA_GPU_BUDGET_S seconds from start by which the runner must be done (default 540, inside the
#                     device tool's 600 s): models not ready in time are skipped, the JSON still written
#   VK_ICD_FILENAMES  a Vulkan driver to use instead of NVIDIA's (e.g. SwiftShader, for a rehearsal)
#   Every RAMA_GPU_* variable of the runner passes through (goldens, kernels, token counts).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PACK=$ROOT/.gpu-pack
WORK=${RAMA_GPU_WORK:-/tmp/rama-gpu}
RESULTS=${OUT:-$WORK}
export RAMA_GPU_MODELS=${RAMA_GPU_MODELS-s15,s110,s110q,tl1bq,l7bq}
T0=$(date +%s)
export RAMA_GPU_DEADLINE_MS=$(((T0 + ${RAMA_GPU_BUDGET_S:-540}) * 1000))
say() { echo "[gpu-check +$(($(date +%s) - T0))s] $*" >&2; }
die() { say "$*"; exit 1; }

[ -f "$PACK/runner.mjs" ] || die "no $PACK/runner.mjs: run scripts/pack-gpu-check.sh first and carry .gpu-pack"
mkdir -p "$WORK/bin" "$WORK/models" "$RESULTS"
# The log comes back as a file too (the device tool returns only the output's tail).
exec 2> >(tee -a "$RESULTS/gpu-check.log" >&2)

# xz, or Python's lzma where xz-utils is missing.
unxz_to() {
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" >"$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}

NODE=$WORK/bin/node
export NODE PACK
if [ ! -x "$NODE" ]; then
  unxz_to "$PACK/node.xz" "$NODE.tmp" && chmod +x "$NODE.tmp" && mv "$NODE.tmp" "$NODE" || die "cannot unpack Node"
fi
DAWN=$PACK/node_modules/webgpu/dist/linux-x64/dawn.node
[ -f "$DAWN" ] || unxz_to "$DAWN.xz" "$DAWN" || die "cannot unpack dawn.node"
say "node $("$NODE" --version), $(uname -m), $(nproc) cores"

# The Vulkan loader (dawn.node links libvulkan.so.1): Debian's, unpacked to / only when none is installed.
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
  say "no libvulkan.so.1: installing $(basename "$PACK"/debs/libvulkan1_*.deb)"
  for f in "$PACK"/debs/*.deb; do dpkg -x "$f" / || die "dpkg -x $f failed"; done
  ldconfig
fi
ldconfig -p 2>/dev/null | grep -E 'libvulkan.so.1|libGLX_nvidia|libnvidia-gpucomp' | sed 's/^/  /' >&2

# The driver: NVIDIA's manifest where the machine has one, unless a driver was chosen (VK_ICD_FILENAMES).
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; break; fi
  done
fi
say "Vulkan driver: ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-(loader default)}}"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/  /' >&2
export NODEVICE_SELECT=1

# The synthetic models, one background job each (the runner waits for each file as it needs it). The jobs
# run in their own session (setsid), so they outlive this call: a following call on the same machine
# finds the files, or the jobs still writing them (NAME.pid), instead of starting again.
export RAMA_SHARED=$PACK/shared RAMA_GPU_MODEL_DIR=$WORK/models
PLAN=$("$NODE" "$PACK/runner.mjs" --synth-plan "$RAMA_GPU_MODELS") || die "bad RAMA_GPU_MODELS=$RAMA_GPU_MODELS"
SETSID=$(command -v setsid || true)
started=()
while IFS='|' read -r name args; do
  [ -n "$name" ] || continue
  m=$WORK/models/$name
  [ -f "$m.bin" ] && continue
  if [ -f "$m.pid" ] && kill -0 "$(cat "$m.pid")" 2>/dev/null; then say "synth-model $name: still running from an earlier call"; continue; fi
  rm -f "$m.failed" "$m.bin.tmp"
  # shellcheck disable=SC2016
  $SETSID bash -c '
    m=$1; shift; s=$(date +%s%N)
    if "$NODE" "$PACK/shared/tools/synth-model.mjs" "$@" --out "$m.bin.tmp" >"$m.log" 2>&1; then
      echo $((($(date +%s%N) - s) / 1000000)) >"$m.ms"
      mv "$m.bin.tmp" "$m.bin"
    else
      touch "$m.failed"
    fi
    rm -f "$m.pid"' synth "$m" $args </dev/null >/dev/null 2>&1 &
  echo $! >"$m.pid"
  started+=("$name")
done <<<"$PLAN"
[ ${#started[@]} -gt 0 ] && say "making ${#started[@]} synthetic model(s) in $WORK/models: ${started[*]}"

say "running the goldens and the models; JSON in $RESULTS/gpu-check.json"
RAMA_GPU_OUT=$RESULTS/gpu-check.partial.json "$NODE" "$PACK/runner.mjs" >"$RESULTS/gpu-check.json"
rc=$?
for f in "$WORK"/models/*.ms; do [ -f "$f" ] && say "synth-model $(basename "$f" .ms): $(cat "$f") ms"; done
say "runner exit code $rc"
exit $rc
