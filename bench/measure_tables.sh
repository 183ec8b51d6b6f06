#!/usr/bin/env bash
# Measure the shipped cpu-litert latency tables on this machine (resumable: rerun to continue).
# Each step appends to data/latency_tables/<profile>/ and skips rows already there.
# The direct LiteRT writer converts in milliseconds inline, so nothing runs beside the
# timing; the latency is the timing thread's CPU time (profile clock "cpu"), per round the
# minimum over its runs (estimator "min", chosen by bench/clock_estimator.py), median over rounds.
# Operators: 5 rounds x 20 runs (the profile's defaults); networks: 3 rounds x 10 runs.
set -uo pipefail
cd "$(dirname "$0")/.."
M=".venv/bin/mnas"
PY=".venv/bin/python"
log() { echo "[$(date -u +%FT%TZ)] $*"; }
step() { log "start: $*"; "$M" "$@" --no-progress; log "end ($?): $*"; }
NET="--rounds 3 --runs 10 --warmup 3"
step measure ops --profile cpu-litert --space anb
step measure models --profile cpu-litert --space anb --random 1000 --seed 0 $NET
step measure ops --profile cpu-litert --space mnasnet
step measure models --profile cpu-litert --space mnasnet --random 2000 --seed 0 $NET
step measure models --profile cpu-litert --reference $NET
rep() { log "start: repeatability $*"; "$PY" bench/repeatability.py "$@" --no-progress; log "end ($?): repeatability $*"; }
rep --space anb -n 200
rep --space mnasnet -n 200
rep --space mnasnet -n 200 --busy  # while a busy loop runs on every core
step measure ops --profile cpu-litert --space fbnet
step measure models --profile cpu-litert --space fbnet --random 1000 --seed 0 $NET
rep --space fbnet -n 200
step measure ops --profile cpu-litert --space nasbench-macro
log "all steps done"
