#!/usr/bin/env bash
# System packages that headless GUI tests need on Debian/Ubuntu: a virtual X server (Xvfb) and
# mesa's software OpenGL, plus the xcb/xkb libraries Qt's xcb platform plugin loads.
# Does nothing where they are already installed or where apt-get is not available.
set -euo pipefail
packages=(xvfb xauth libgl1-mesa-dri libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: no apt-get here; install Xvfb and mesa GL with your package manager" >&2
  exit 0
fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
