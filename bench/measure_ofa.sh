#!/usr/bin/env bash
# Measure the cpu-litert tables of the ofa-mbv3 space and of the published mobile
# networks on this machine (issue L item 5; resumable: rerun to continue).
# Usage: bash bench/measure_ofa.sh [ROOT]   (ROOT: tables root, default data/latency_tables)
# Same protocol as bench/measure_tables.sh: thread-CPU clock, estimator min+ref on the
# folder's reference base; operators 5 rounds x 20 runs, networks 5 rounds x 10 runs.
# Timing pins itself to the last core: keep other work off it (taskset -c 0 ...).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="${1:-data/latency_tables}"
M=".venv/bin/mnas"
log() { echo "[$(date -u +%FT%TZ)] $*"; }
step() { log "start: $*"; "$M" "$@" --out "$ROOT" --no-progress; log "end ($?): $*"; }
NET="--rounds 5 --runs 10 --warmup 3"
# every operator of ofa-mbv3 at its 25 resolutions (1,251), then 1,000 random members
step measure ops --profile cpu-litert --space ofa-mbv3
step measure models --profile cpu-litert --space ofa-mbv3 --random 1000 --seed 0 $NET
# every registered reference network, timed on this host in a table of its own
step measure models --profile cpu-litert --reference --table reference-mobile_models.csv $NET
# 200 of the 1,000 re-timed in a separate process: the labels' noise floor
log "start: repeatability ofa-mbv3"
.venv/bin/python bench/repeatability.py --space ofa-mbv3 -n 200 --no-progress ${1:+--tables "$ROOT"}
log "end ($?): repeatability ofa-mbv3"
log "all steps done"
