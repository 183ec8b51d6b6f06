#!/usr/bin/env bash
# Measure the shipped latency tables on this machine (resumable: rerun to continue).
# Each step appends to data/latency_tables/<profile>/ and skips rows already there.
set -uo pipefail
cd "$(dirname "$0")/.."
M=".venv/bin/mnas"
log() { echo "[$(date -u +%FT%TZ)] $*"; }
step() { log "start: $*"; "$M" "$@" --no-progress; log "end ($?): $*"; }
step measure ops --profile cpu-litert --space anb
step measure models --profile cpu-litert --space anb --random 300 --seed 0
step measure ops --profile cpu-litert --space nasbench-macro
step measure ops --profile cpu-litert --space fbnet
step measure models --profile cpu-litert --reference
step measure models --profile cpu-onnxruntime --space nasbench-macro --all --chunk 64
step measure ops --profile cpu-litert --space mnasnet
step measure models --profile cpu-litert --space mnasnet --random 300 --seed 0
log "all steps done"
