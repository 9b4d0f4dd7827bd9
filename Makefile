# The two commands a new user needs: `make run` and `make test`. Both install missing Debian
# packages first (scripts/install-deps.sh, quick when everything is there).
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2
HOME_DIR ?=
NODE_ARGS ?=

.PHONY: all deps build run test test-asan fuzz clean bench demo

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Starts a node with defaults in the foreground (Ctrl-C stops it). Initialises the home first.
run: build
	$(BUILD)/cli/outlast $(if $(HOME_DIR),--home $(HOME_DIR)) init
	$(BUILD)/cli/outlast $(if $(HOME_DIR),--home $(HOME_DIR)) node $(NODE_ARGS)

# Every test tier, then each fuzz target replays its seed corpus and FUZZ_RUNS inputs mutated from
# seed 1 (the same every run). LABEL=unit (or swarm, push, gateway, ...) runs one tier and skips
# fuzzing. `make fuzz` explores instead: a random seed for FUZZ_SECONDS per target.
FUZZ_RUNS ?= 50000
FUZZ_SECONDS ?= 300
test: build
	cd $(BUILD) && ctest --output-on-failure --no-tests=error -j$(JOBS) $(if $(LABEL),-L $(LABEL))
	$(if $(LABEL),,FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh)

# The unit, storage, node, net, swarm, push and functional tiers under AddressSanitizer + UBSan
# (build-asan), building only what they run: the target sanitized_tiers (tests/CMakeLists.txt). A
# test of these tiers missing from it fails as not found.
test-asan: deps
	cmake --preset asan-ubsan
	cmake --build --preset asan-ubsan --target sanitized_tiers
	cd build-asan && ctest --output-on-failure --no-tests=error -j$(JOBS) -L 'unit|storage|node|net|swarm|push|functional'

fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

# An outage drill to watch: a publisher, three mirrors, the publisher goes down, a reader still
# gets the site and a critical notice. Loopback only; cleans up after itself.
demo: build
	scripts/demo.sh $(BUILD)/cli/outlast

# Benchmarks run on an optimised build of their own. BENCH_ARGS=--small for a quick run. Every
# bench appends its rows to bench/results/summary.jsonl under one BENCH_RUN; bench_summary prints
# them as one table at the end.
BENCH_ARGS ?=
ifndef BENCH_RUN
BENCH_RUN := $(shell date +%Y%m%dT%H%M%S)
endif
export BENCH_RUN
bench: deps
	@./scripts/install-deps.sh --bench
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
	cmake --build build-release -j$(JOBS) --target benchmarks
	build-release/bench/bench_records
	build-release/bench/bench_replicate build-release/cli/outlast $(BENCH_ARGS)
	build-release/bench/bench_propagation build-release/cli/outlast
	build-release/bench/bench_footprint build-release/cli/outlast $(if $(findstring --small,$(BENCH_ARGS)),--sites 100)
	bench/bench_gateway.sh build-release/cli/outlast
	build-release/bench/bench_summary

clean:
	rm -rf $(BUILD)
