#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan, and runs each for a
# bounded time from its committed seed corpus. CI runs this with the default 30 s per target;
# run it longer by hand: scripts/fuzz.sh 600.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_records fuzz_push fuzz_torrent fuzz_gateway_path fuzz_key_file fuzz_config fuzz_bundle)
build=${FUZZ_BUILD:-build-fuzz}
jobs=${JOBS:-2}

command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (apt install clang libclang-rt-14-dev)" >&2; exit 1; }
if [[ ! -f $build/CMakeCache.txt ]]; then
  CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTLAST_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
fi
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

failed=0
for t in "${targets[@]}"; do
  # Work on a copy: new inputs stay out of the repository unless someone adds them on purpose.
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$t/." "$work/"
  echo "fuzz: $t for ${seconds}s"
  if ! "$build/tests/fuzz/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
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
