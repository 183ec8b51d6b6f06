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
step measure ops --profile cpu-litert --space fbnet
step measure models --profile cpu-litert --space fbnet --random 1000 --seed 0 $NET
step measure ops --profile cpu-litert --space nasbench-macro
for s in anb mnasnet fbnet; do
  log "start: repeatability $s"; "$PY" bench/repeatability.py --space "$s" -n 200 --no-progress; log "end ($?): repeatability $s"
done
for s in anb mnasnet; do
  log "start: busy repeatability $s"; "$PY" bench/repeatability.py --space "$s" -n 200 --busy --no-progress; log "end ($?): busy repeatability $s"
done
log "all steps done"
