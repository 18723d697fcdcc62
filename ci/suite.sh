#!/usr/bin/env bash
# After the unit and integration tests: the example topologies, the scenario regression suite on
# both backends (JUnit written to target/), the frozen snapshots, and the cookbook recipes.
set -euo pipefail
cd "$(dirname "$0")/.."
topo=target/debug/topo
step() { printf '\n=== %s ===\n' "$*" >&2; }

step "example topologies"
"$topo" validate topologies/*.yaml

step "scenario suite on the model backend"
"$topo" test scenarios/ --backend model --junit target/junit-model.xml

step "scenario suite on the kernel backend"
"$topo" test scenarios/ --backend kernel -j 2 --junit target/junit-kernel.xml
echo "scenario suite JUnit report: $PWD/target/junit-kernel.xml (model: $PWD/target/junit-model.xml)"

step "frozen snapshots"
"$topo" snapshot verify fixtures/snapshots

step "cookbook recipes"
ci/cookbook.sh
