#!/usr/bin/env bash
# Measure the shipped cpu-litert latency tables on this machine (resumable: rerun to continue).
# Usage: bash bench/measure_tables.sh [ROOT]   (ROOT: tables root, default data/latency_tables)
# Each step appends to ROOT/cpu-litert/ and skips rows already there.
# The direct LiteRT writer converts in milliseconds inline, so nothing runs beside the
# timing. The latency is the timing thread's CPU time (profile clock "cpu"); each round is
# followed by 10 runs of the reference operator and its latency is
# min(item runs) / min(reference runs) x the folder's reference base (estimator "min+ref",
# chosen by bench/pairing.py); the table's latency is the median over rounds.
# Operators: 5 rounds x 20 runs (the profile's defaults); networks: 5 rounds x 10 runs.
# Timing pins itself to the last core: keep other work off it (taskset -c 0 ...).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-data/latency_tables}"
M=".venv/bin/mnas"
log() { echo "[$(date -u +%FT%TZ)] $*"; }
step() { log "start: $*"; "$M" "$@" --out "$ROOT" --no-progress; log "end ($?): $*"; }
NET="--rounds 5 --runs 10 --warmup 3"
# the main job's space (anb) first, then the rest
step measure ops --profile cpu-litert --space anb
step measure models --profile cpu-litert --space anb --random 1000 --seed 0 $NET
step measure models --profile cpu-litert --reference $NET
step measure ops --profile cpu-litert --space mnasnet
step measure models --profile cpu-litert --space mnasnet --random 2000 --seed 0 $NET
step measure ops --profile cpu-litert --space fbnet
step measure models --profile cpu-litert --space fbnet --random 1000 --seed 0 $NET
step measure ops --profile cpu-litert --space nasbench-macro
log "all steps done"
