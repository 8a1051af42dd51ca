#!/usr/bin/env bash
# Installs what building and testing Rama needs on a fresh Debian machine:
# pnpm, the workspace's npm packages, and (for the WebGPU and browser tests)
# Debian's chromium, whose SwiftShader Vulkan driver gives WebGPU without a GPU;
# nginx-light for the server's scale-out test (two replicas behind nginx).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v pnpm >/dev/null 2>&1; then
  npm install -g pnpm@12.4.2 >/dev/null
fi

if [ ! -e /usr/lib/chromium/vk_swiftshader_icd.json ] || ! ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium libvulkan1 nginx-light >/dev/null
  else
    echo "setup: WebGPU tests need Debian's chromium and libvulkan1, the scale-out test nginx (run as root: apt-get install chromium libvulkan1 nginx-light)" >&2
  fi
fi

if [ -f pnpm-lock.yaml ]; then pnpm install --frozen-lockfile; else pnpm install; fi
