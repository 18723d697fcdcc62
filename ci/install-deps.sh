#!/usr/bin/env bash
# Install what topo's build and tests need on a fresh Debian 12 machine (run as root).
# --no-install-recommends: wireguard-tools would otherwise pull a kernel image.
set -euo pipefail

packages=(
  # build
  pkg-config libnftnl-dev libmnl-dev libnetfilter-queue-dev
  # lab plumbing used by tests and baselines
  iproute2 iputils-ping nftables iptables conntrack procps fping traceroute tcpdump iperf3
  # real daemons run inside labs
  frr
)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ci/install-deps: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "ci/install-deps: all packages present" >&2
fi

# Debian's frr package may start its own service; topo runs its own per-lab daemons and never
# needs the system instance. Nothing to stop here: policy-rc.d keeps services down in CI images.
