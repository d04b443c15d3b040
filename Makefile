# Entry points of the fcvm project. `make demo` and `make test` are the README's two commands.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build install test test-unit test-asan fuzz chaos bench bench-guest bench-run bench-snapshot bench-density bench-net bench-fuse-pipe bench-volumes guest-setup lint format format-check demo clean

all: build

deps:
	scripts/install-deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# Installs into $(DESTDIR)$(PREFIX): bin/fcvm, libexec/fcvm/, the systemd units (cmake/Install.cmake).
PREFIX ?= /usr/local
install: build
	DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

# Every test, then the unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test: build
	cd $(BUILD) && ctest --output-on-failure --timeout 600 -j $(JOBS)
	$(MAKE) test-asan

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DFCVM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)

test-asan: $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit-tests
	cd $(ASAN_BUILD) && ctest --output-on-failure --timeout 600 -L unit -j $(JOBS)

# Every libFuzzer target of scripts/fuzz-targets (decoders a guest, a client or a file reaches)
# for FUZZ_SECONDS each; CI runs each for a few seconds as part of `make test`. Findings land in
# $(BUILD)/fuzz-long/<target>/artifacts.
FUZZ_SECONDS ?= 600
fuzz:
	grep -v '^#' scripts/fuzz-targets | while read -r dir target seconds max_len; do \
	  scripts/run-fuzz $$dir $$target $(abspath $(BUILD))/fuzz-long/$$target $(FUZZ_SECONDS) $$max_len \
	    || exit 1; \
	done

# ROUNDS operations on VMs, snapshots, clones, volumes and networks, each with a kill -9 of a random
# fcvm process (supervisor, netd, worker, QEMU, uffd-server, fuse-pipe server or CLI), then the
# leak audit; SEED repeats a run's operations. CI runs 20 rounds (ctest chaos_short).
ROUNDS ?= 200
chaos: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_chaos --rounds $(ROUNDS) \
	  $(if $(SEED),--seed $(SEED))

bench: build bench-guest bench-run bench-snapshot bench-net
	$(BUILD)/bin/fcvm_state_table_bench

# fuse-pipe against the host directory and libfuse's passthrough_ll (needs root and /dev/fuse).
bench-fuse-pipe: $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target fuse_pipe_bench
	$(BUILD)/bin/fuse_pipe_bench

# In a guest: the same workloads on its own disk, over QEMU's virtio-9p and over a --map volume
# (fuse-pipe), and issue 12's POSIX checks on each. Downloads Debian's generic kernel (it has 9p)
# into the guest data dir once. QUICK=1: smaller files, fewer rounds.
bench-volumes: guest-setup
	cmake --build $(BUILD) -j $(JOBS) --target fcvm_volume_bench
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_volume_bench \
	  $(if $(QUICK),--quick)

# Guest artifacts and the test image for guest tests and benchmarks, in $(BUILD)/guest-data.
guest-setup: build
	FCVM_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm setup
	tests/guest/make-busybox-image

bench-guest: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_guest_bench

# `fcvm podman run` through the real binaries vs a bare QEMU boot (RAM on tmpfs and on disk), and
# fcvm's own memory per VM vs QEMU's.
bench-run: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_run_bench

# Idle VMs at 1, 8 and 32 (COUNTS=1,8 for fewer): time to all healthy, memory and idle CPU per VM.
COUNTS ?= 1,8,32
bench-density: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_density_bench --counts $(COUNTS)

# Snapshots: a clone vs a cold run to healthy, the pause of snapshot create, memory of clones vs
# cold VMs, many clones at once.
bench-snapshot: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_snapshot_bench

# Networks: host <-> guest throughput and connection rate per mode, vs the host's loopback.
bench-net: guest-setup
	FCVM_TEST_DATA_DIR=$(abspath $(BUILD))/guest-data $(BUILD)/bin/fcvm_network_bench

lint: $(BUILD)/build.ninja
	scripts/lint $(BUILD)

format:
	scripts/lint --fix

format-check:
	scripts/lint --format-only

demo: deps build
	scripts/demo $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
