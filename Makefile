# Thin wrapper around CMake for the README's two commands:
#   make run   installs missing Debian packages, builds, and profiles a demo workload for 10 s,
#              writing ./ember-profiles/demo.pb.gz and ./ember-profiles/demo.svg (no server needed)
#   make test  installs missing Debian packages, builds, and runs every test with ctest
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

# Build and test dependencies, all from Debian 12.
DEPS := build-essential cmake pkg-config clang llvm bpftool libbpf-dev libelf-dev zlib1g-dev libjson-c-dev \
	libunwind-dev libprotobuf-c-dev protobuf-c-compiler libcurl4-openssl-dev curl openssl \
	golang-go golang-github-google-pprof-dev protobuf-compiler elfutils python3 python3.11 python3.11-venv python3-protobuf \
	linux-perf bpftrace binutils docker-compose systemtap-sdt-dev libclang-rt-14-dev

.PHONY: all deps configure build run test clean

all: build

deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
		echo "ember: installing Debian packages:" $$missing; \
		if [ "$$(id -u)" -ne 0 ]; then echo "ember: run as root (or with sudo) to install packages" >&2; exit 2; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/ember record --duration 10 -o ember-profiles/demo.pb.gz \
		--flamegraph ember-profiles/demo.svg -- $(BUILD_DIR)/tests/fixtures/demo_workload 10
	@echo "ember: wrote ember-profiles/demo.pb.gz and ember-profiles/demo.svg"

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j 1

clean:
	rm -rf $(BUILD_DIR)
