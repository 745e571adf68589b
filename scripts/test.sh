#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts what the tests
# need (tansu, PostgreSQL, the Docker tests' images and their registry, a
# Flink session cluster), then runs every test and compiles the benchmarks.
# Each stage prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
  local name=$1; shift
  local started=$SECONDS
  echo "==> $name" >&2
  "$@"
  echo "<== $name: $((SECONDS - started))s" >&2
}

ensure_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 || cargo install cargo-nextest --locked
}

stage "cargo-nextest" ensure_nextest
stage "tansu (cached after the first build)" scripts/services.sh ensure-tansu
# After tansu: its image is built from the host's tansu binary.
stage "docker test images on 127.0.0.1:5000 (cached)" scripts/services.sh test-images
stage "postgresql for tests" scripts/services.sh test-up
stage "flink (cached after the first download)" scripts/services.sh ensure-flink
stage "flink cluster for tests" scripts/services.sh flink-up
stage "build tests" cargo build --tests --locked
stage "tests" cargo nextest run --locked --no-fail-fast
stage "benchmarks compile (not run)" cargo bench --no-run --locked
