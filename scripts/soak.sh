#!/usr/bin/env bash
# Soak: the fault drill (tests/swarm_test.cpp, "[fault]": publisher, mirror and reader SIGKILLed
# at random points of publishing and syncing; after restarts nothing acknowledged is lost and all
# converge; then mirror and reader killed mid-download alone) for many rounds from many seeds. CI
# runs 20 publish rounds and 6 sync rounds from one seed; this runs more.
#
#   scripts/soak.sh [ROUNDS_PER_SEED] [SEEDS]      (defaults: 50 rounds x 10 seeds = 500 rounds)
#   SYNC_ROUNDS=N   sync-phase rounds per seed (default: a fifth of ROUNDS_PER_SEED; about 3 s each)
#
# Stops at the first failure and keeps its output in build/soak-<seed>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-50}
seeds=${2:-10}
sync_rounds=${SYNC_ROUNDS:-$((rounds / 5 > 0 ? rounds / 5 : 1))}
build=${BUILD:-build}
cmake --build "$build" -j"${JOBS:-2}" --target swarm_test outlast >/dev/null
start=$(date +%s)
for ((i = 1; i <= seeds; i++)); do
  seed=$((20261128 + i * 7919))
  log="$build/soak-$seed.log"
  printf 'soak: seed %d, %d rounds + %d sync rounds... ' "$seed" "$rounds" "$sync_rounds"
  if OUTLAST_FAULT_SEED=$seed OUTLAST_FAULT_ROUNDS=$rounds OUTLAST_FAULT_SYNC_ROUNDS=$sync_rounds "$build/tests/swarm_test" "[fault]" >"$log" 2>&1; then
    echo "ok ($(( $(date +%s) - start )) s so far)"
    rm -f "$log"
  else
    echo "FAILED; see $log"
    exit 1
  fi
done
echo "soak: $((rounds * seeds)) rounds and $((sync_rounds * seeds)) sync rounds from $seeds seeds passed in $(( $(date +%s) - start )) s"
