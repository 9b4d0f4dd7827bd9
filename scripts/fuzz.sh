#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan, and runs each from its
# committed seed corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    explore: random seed, bounded time
#   FUZZ_RUNS=N scripts/fuzz.sh [TARGET...]             replay: seed 1, N inputs per target
#
# `make test` (and CI) replays: the same inputs every run, so it fails only on a regression, never
# on a new discovery; `make fuzz` explores, and what it finds goes into the corpus with its fix.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-}
if [[ -z $runs ]]; then
  seconds=${1:-30}
  shift || true
fi
targets=("$@")
build_targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(fuzz_records fuzz_push fuzz_torrent fuzz_gateway_path fuzz_key_file fuzz_config fuzz_bundle)
  build_targets=(fuzz_targets)  # all of them as one target: a list is built one target at a time
fi
build=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-2}

command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (apt install clang libclang-rt-14-dev)" >&2; exit 1; }
if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTLAST_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$build" -j"$jobs" --target "${build_targets[@]}"

failed=0
for t in "${targets[@]}"; do
  # Work on a copy: new inputs stay out of the repository unless someone adds them on purpose.
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$t/." "$work/"
  if [[ -n $runs ]]; then
    echo "fuzz: $t, $runs inputs from seed 1"
    limit=(-seed=1 -runs="$runs")
  else
    echo "fuzz: $t for ${seconds}s"
    limit=(-max_total_time="$seconds")
  fi
  if ! "$build/tests/fuzz/$t" "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -artifact_prefix="$build/$t-" -print_final_stats=1 "$work" > "$build/$t.log" 2>&1; then
    echo "fuzz: $t FAILED; see $build/$t.log and the crash input $build/$t-*" >&2
    tail -40 "$build/$t.log" >&2
    failed=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$build/$t.log" | tail -2 | sed 's/^/   /'
  fi
  rm -rf "$work"
done
exit $failed
