#!/usr/bin/env bash
# Measure the shipped latency tables on this machine (resumable: rerun to continue).
# Each step appends to data/latency_tables/<profile>/ and skips rows already there.
# Conversion (litert-torch, ~1 s per layer) dominates: `--convert-only` first converts
# the missing rows on every core, then the timing step runs pinned to the last core
# with the machine otherwise quiet (pin your own work with `taskset -c 0`).
set -uo pipefail
cd "$(dirname "$0")/.."
M=".venv/bin/mnas"
PY=".venv/bin/python"
log() { echo "[$(date -u +%FT%TZ)] $*"; }
step() { log "start: $*"; "$M" "$@" --no-progress; log "end ($?): $*"; }
both() { step "$@" --convert-only; step "$@"; }  # convert on every core, then time
step measure ops --profile cpu-litert --space anb
step measure ops --profile cpu-litert --space nasbench-macro
step measure ops --profile cpu-onnxruntime --space nasbench-macro
step measure ops --profile cpu-litert --space fbnet
step measure models --profile cpu-litert --reference --convert-only
both measure models --profile cpu-litert --space anb --random 300 --seed 0
step measure models --profile cpu-litert --reference
log "start: repeatability anb"; "$PY" bench/repeatability.py --space anb -n 100 --no-progress; log "end ($?): repeatability anb"
# 3,969 small networks: 3 rounds x 20 runs each keeps this table to minutes
both measure models --profile cpu-onnxruntime --space nasbench-macro --all --chunk 64 --rounds 3 --runs 20
both measure ops --profile cpu-litert --space mnasnet
both measure models --profile cpu-litert --space mnasnet --random 300 --seed 0
log "start: repeatability mnasnet"; "$PY" bench/repeatability.py --space mnasnet -n 100 --no-progress; log "end ($?): repeatability mnasnet"
log "all steps done"
