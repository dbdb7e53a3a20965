SHELL := /bin/bash
# LiveTrace: the two commands of the README, plus benchmarks and soak tests.
#   make demo   builds an example program, runs the main job on it, shows the result
#   make test   runs the whole test suite (what .ci/run calls)
#   make bench  prints benchmark ratios against baselines measured in the same run
# Each target installs the Debian packages it needs when they are missing.

SWIFT      ?= swift
APT_PKGS   := libdw-dev libzydis-dev pkg-config gcc g++ make binutils chromium python3-protobuf
BUILD_DIR  := .build/debug
RELEASE    := .build/release

.PHONY: deps build release lib demo test bench soak docs clean

# Installs missing system packages (root on the project machines; sudo otherwise).
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build

# --static-swift-stdlib: the CLI links the Swift runtime and Foundation in;
# resolving their symbols and relocations at every start was a third of the
# command's own start-up (Benchmarks/startup.sh). liblivetrace.so links its
# runtime statically anyway (-static-stdlib in Package.swift).
release: deps
	$(SWIFT) build -c release --static-swift-stdlib

# liblivetrace.so (include/livetrace.h): SwiftPM names the product
# libLiveTraceC.so; its soname, and this link, are liblivetrace.so.
lib: release
	ln -sf libLiveTraceC.so $(RELEASE)/liblivetrace.so

demo: release
	@./Examples/demo.sh $(RELEASE)

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing 2>&1 | tee .build/test.log; status=$${PIPESTATUS[0]}; \
	passed=$$(grep -cE "^Test Case '.*' passed" .build/test.log); \
	failed=$$(grep -cE "^Test Case '.*' failed" .build/test.log); \
	skipped=$$(grep -cE "^Test Case '.*' skipped" .build/test.log); \
	echo "xctest: $$passed passed, $$failed failed, $$skipped skipped"; \
	exit $$status

bench: release
	@./Benchmarks/run.sh $(RELEASE)

# The man page and the shell completions, generated from the CLI's own
# definitions (swift-argument-parser); CommandLineTests checks they are current.
docs: build
	$(SWIFT) package --allow-writing-to-package-directory generate-manual
	cp .build/plugins/GenerateManual/outputs/livetrace/livetrace.1 docs/man/livetrace.1
	$(BUILD_DIR)/livetrace --generate-completion-script bash > completions/livetrace.bash
	$(BUILD_DIR)/livetrace --generate-completion-script zsh > completions/_livetrace
	$(BUILD_DIR)/livetrace --generate-completion-script fish > completions/livetrace.fish

soak: deps
	LIVETRACE_SOAK=1 $(SWIFT) test --filter Soak

clean:
	rm -rf .build
