#!/usr/bin/env bash
# Builds the benchmark's binaries and runs every scenario against every
# implementation. Arguments go to benchall, e.g.:
#   ./run.sh            # full run (about 10 minutes on 2 cores)
#   ./run.sh -quick     # scaled down, under 2 minutes
#   ./run.sh -profile profiles   # also CPU-profile the gin-sse server runs
set -euo pipefail
cd "$(dirname "$0")"
go build -o bin/ ./cmd/sseserver ./cmd/sseload ./cmd/benchall
exec bin/benchall "$@"
