#!/bin/sh
# Measures programs under `ustack run` beside the kernel, slirp4netns and
# pasta, and the tap and host attachments, and writes BENCHMARKS.md's tables.
# As root. --quick: one short round (under 4 minutes). See internal/bench.
set -e
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -o "$bin/bench" ./internal/bench
"$bin/bench" "$@"
