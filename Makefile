# allocate: build, test and lint entry points. `make` (or `make help`) lists them.
#
# Tools install themselves on first use, into git-ignored folders at the repo root:
#   .venv/   Python venv with requirements-dev.txt (maturin, pytest, mypy, shellcheck, hadolint)
#   .tools/  cargo-deny (scripts/install-cargo-deny.sh)
# `make clean` removes both, with cargo's target/.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-builtin-variables

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VENV_STAMP := $(VENV)/.stamp
TOOLS_DIR := $(CURDIR)/.tools
CARGO_DENY_VERSION := 0.20.2
CARGO_DENY_STAMP := $(TOOLS_DIR)/.cargo-deny-$(CARGO_DENY_VERSION).stamp

# `cargo deny` finds .tools/bin/cargo-deny through PATH.
export PATH := $(TOOLS_DIR)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run shell venv tools lint test test-modules tests test-complexity test-security \
	test-lint-shellcheck test-lint-docker test-lint-systemd test-lint-haproxy clean bench test-c test-c-install install header test-py \
	bench-py wheel test-wheel

help: ## Show this list of targets (the default)
	@echo 'Usage: make TARGET'
	@echo
	@awk 'BEGIN { FS = ":[^#]*## " } /^[a-zA-Z0-9_.-]+:[^#]*## / { printf "  %-22s %s\n", $$1, $$2 }' \
		$(MAKEFILE_LIST)

run: ## Run the HTTP server on 127.0.0.1:8080 (release build of allocate-http)
	cargo run --release -p allocate-http -- --listen 127.0.0.1:8080

shell: $(VENV_STAMP) $(CARGO_DENY_STAMP) ## Open a shell with .venv activated and .tools/bin on PATH
	@scripts/dev-shell.sh

venv: $(VENV_STAMP) ## Create .venv and install requirements-dev.txt into it

$(VENV_STAMP): requirements-dev.txt scripts/make-venv.sh
	PYTHON=$(PYTHON) scripts/make-venv.sh $(VENV) requirements-dev.txt
	touch $@

tools: $(CARGO_DENY_STAMP) ## Install the tools under .tools (cargo-deny)

$(CARGO_DENY_STAMP): scripts/install-cargo-deny.sh
	scripts/install-cargo-deny.sh $(CARGO_DENY_VERSION) $(TOOLS_DIR)
	touch $@

lint: ## cargo fmt --check, and clippy on all targets with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# Further test suites are appended to this recipe. `test` needs .venv first: allocate-py's
# build and tests run in it.
test: $(VENV_STAMP) ## Run the test suites: module cycles (test-modules), cargo tests (the PostgreSQL store's start their own cluster: see postgresql; /metrics is checked with promtool), the C API's (test-c, test-c-install), the Python package's (test-py, test-wheel), the dashboard's in Chromium (test-browser)
	$(MAKE) --no-print-directory test-modules
	$(MAKE) --no-print-directory postgresql
	$(MAKE) --no-print-directory promtool
	cargo test --workspace --locked
	$(MAKE) --no-print-directory test-c
	$(MAKE) --no-print-directory test-c-install
	$(MAKE) --no-print-directory test-py
	$(MAKE) --no-print-directory test-wheel
	$(MAKE) --no-print-directory test-browser

# The tests of the PostgreSQL store (--store) start a throwaway cluster of their own from
# Debian's binaries (testkit's `postgres` module); never a system-wide one.
# ALLOCATE_PG_BIN=/path/to/bin uses other binaries.
.PHONY: postgresql
postgresql: ## Install Debian's postgresql package when missing (initdb and postgres for the store's tests)
	[[ -n "$${ALLOCATE_PG_BIN:-}" ]] || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || \
		scripts/apt-install.sh postgresql

# The metrics tests check a real scrape of /metrics with `promtool check metrics`; without
# promtool they skip that check (and say so), except under CI=true, where they fail.
.PHONY: promtool
promtool: ## Install Debian's prometheus package when missing (promtool, for the /metrics tests)
	command -v promtool >/dev/null || scripts/apt-install.sh prometheus

test-modules: ## Fail when the top-level modules of any crate import each other in a cycle
	$(PYTHON) scripts/module-cycles.py allocate-*/src testkit/src loadgen/src benches/common fuzz/src

tests: test lint test-complexity test-security test-lint-shellcheck test-lint-docker test-lint-systemd test-lint-haproxy ## test + every linter: lint, test-complexity, test-security, test-lint-shellcheck, test-lint-docker, test-lint-systemd, test-lint-haproxy

test-complexity: ## clippy with cognitive_complexity denied (threshold 20, in clippy.toml)
	cargo clippy --workspace --all-targets --locked -- -D warnings -D clippy::cognitive_complexity

test-security: $(CARGO_DENY_STAMP) ## cargo-deny licenses/bans/sources; advisories only if the DB can be fetched
	cargo deny --locked check licenses bans sources
	scripts/deny-advisories.sh

test-lint-shellcheck: $(VENV_STAMP) ## shellcheck .ci/run, scripts/*.sh and every *.sh in git
	SHELLCHECK=$(VENV)/bin/shellcheck scripts/shellcheck-all.sh

# Every rule, down to style level, fails the build; none is ignored.
test-lint-docker: $(VENV_STAMP) ## hadolint on the Dockerfile (every finding fails)
	$(VENV)/bin/hadolint --version
	$(VENV)/bin/hadolint --failure-threshold style Dockerfile
	@echo "hadolint: ok"

# systemd-analyze verify checks that ExecStart= is executable, so each unit is verified as a
# copy whose ExecStart= points at a stand-in binary. It only warns about unknown keys or bad
# values (exit 0), so any output fails too. Skipped where systemd-analyze is not installed.
test-lint-systemd: ## systemd-analyze verify examples/systemd/*.service (skipped without systemd)
	@if ! command -v systemd-analyze >/dev/null; then \
		echo "test-lint-systemd: SKIPPED: systemd-analyze is not installed (apt package systemd)"; \
		exit 0; \
	fi; \
	dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	mkdir "$$dir/bin"; \
	for unit in examples/systemd/*.service; do \
		sed -e "s|^ExecStart=/usr/local/bin/|ExecStart=$$dir/bin/|" "$$unit" > "$$dir/$${unit##*/}"; \
	done; \
	for bin in $$(sed -n "s|^ExecStart=$$dir/bin/\([^ ]*\).*|\1|p" "$$dir"/*.service); do \
		install -m 0755 /dev/null "$$dir/bin/$$bin"; \
	done; \
	echo "$$(systemd-analyze --version | head -n 1): verify $$(echo examples/systemd/*.service)"; \
	out=$$(systemd-analyze verify --man=no "$$dir"/*.service 2>&1) || { echo "$$out"; exit 1; }; \
	if [[ -n $$out ]]; then echo "$$out"; exit 1; fi; \
	echo "systemd-analyze verify: ok"

# The HA example's proxy (examples/ha). Its servers' names resolve only on the compose
# network, so haproxy warns that it disables them here: only errors fail.
test-lint-haproxy: ## haproxy -c on examples/ha/haproxy.cfg (skipped without haproxy)
	@if ! command -v haproxy >/dev/null; then \
		echo "test-lint-haproxy: SKIPPED: haproxy is not installed (apt package haproxy)"; \
		exit 0; \
	fi; \
	haproxy -v | head -n 1; \
	haproxy -c -q -f examples/ha/haproxy.cfg; \
	echo "haproxy -c: ok"

# The dashboard in a real browser (allocate-http/tests/browser): a headless Chromium from
# Debian's packages (installed when missing) loads the page from a real server with agents,
# allocations and a queue, checks what it draws, a live update, a release, the token form,
# and saves target/dashboard.png and target/dashboard-phone.png. About 10 s once built.
# ALLOCATE_CHROMIUM=/path/to/chromium uses another binary.
.PHONY: test-browser
test-browser: ## The dashboard in headless Chromium (installs Debian's chromium when missing); screenshots in target/
	command -v chromium >/dev/null || [[ -n "$${ALLOCATE_CHROMIUM:-}" ]] || \
		scripts/apt-install.sh chromium fonts-dejavu-core
	cargo test -p allocate-http --locked --test browser -- --ignored

# The C API: static and shared library, the header, pkg-config, C and C++ programs.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
C_OUT := $(TARGET_DIR)/c
C_LIB_DIR := $(TARGET_DIR)/debug
CFLAGS_C := -std=c11 -Wall -Wextra -Werror -g
VALGRIND := valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect

# `make install`: the C library where a C programmer looks for it.
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR ?=
C_VERSION = $(shell cargo pkgid -p allocate-c | sed 's/.*[#@]//')

install: ## Install the C library (release): header, static and shared library (SONAME), allocate.pc, under PREFIX (/usr/local); LIBDIR, INCLUDEDIR, DESTDIR as usual
	cargo build --release -p allocate-c --locked
	scripts/install-c.sh "$(TARGET_DIR)/release" "$(DESTDIR)" "$(PREFIX)" "$(LIBDIR)" "$(INCLUDEDIR)" "$(C_VERSION)"

test-c-install: ## make install into a temporary prefix; build and run examples/c/lab.c from outside the repo with only pkg-config (shared and static)
	scripts/test-c-install.sh

header: ## Regenerate include/allocate.h with cbindgen (a test fails when it is stale)
	ALLOCATE_BLESS=1 cargo test -p allocate-c --test header --locked

test-c: ## Build the C library; compile examples/c and the C tests (-Werror, static and shared), C++ too; run them, also under valgrind
	cargo build -p allocate-c --locked
	command -v valgrind >/dev/null || scripts/apt-install.sh valgrind
	command -v pkg-config >/dev/null || scripts/apt-install.sh pkg-config
	mkdir -p $(C_OUT)
	sed -e 's|@PREFIX@|$(CURDIR)|' -e 's|@LIBDIR@|$(C_LIB_DIR)|' -e 's|@INCLUDEDIR@|$(CURDIR)/include|' \
		-e 's|@VERSION@|$(C_VERSION)|' allocate-c/allocate.pc.in > $(C_OUT)/allocate.pc
	# The shared library records its SONAME (allocate-c/build.rs); programs linked here look for it.
	soname=$$(readelf -d $(C_LIB_DIR)/liballocate.so | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'); \
		test -n "$$soname" && ln -sfn liballocate.so $(C_LIB_DIR)/$$soname
	set -e; export PKG_CONFIG_PATH=$(C_OUT); \
	for prog in examples/c/lab.c allocate-c/tests/c/test_allocate.c; do \
		name=$$(basename $$prog .c); \
		cc $(CFLAGS_C) $$(pkg-config --cflags allocate) $$prog $(C_LIB_DIR)/liballocate.a \
			$$(pkg-config --libs-only-l --static allocate | sed 's/-lallocate//') -o $(C_OUT)/$$name-static; \
		cc $(CFLAGS_C) $$(pkg-config --cflags allocate) $$prog $$(pkg-config --libs allocate) \
			-Wl,-rpath,$(C_LIB_DIR) -o $(C_OUT)/$$name-shared; \
	done
	c++ -std=c++17 -Wall -Wextra -Werror -I include allocate-c/tests/c/compile_check.cpp \
		-L $(C_LIB_DIR) -lallocate -Wl,-rpath,$(C_LIB_DIR) -o $(C_OUT)/compile_check
	$(C_OUT)/compile_check
	$(C_OUT)/test_allocate-static
	$(C_OUT)/test_allocate-shared
	$(C_OUT)/lab-static > $(C_OUT)/lab.out && cat $(C_OUT)/lab.out
	$(VALGRIND) $(C_OUT)/test_allocate-static
	$(VALGRIND) $(C_OUT)/lab-shared > /dev/null

# The Python package `allocate` (allocate-py): maturin builds it into .venv (an editable
# install; the compiled module lands in allocate-py/python/allocate/, git-ignored).
PY := $(VENV)/bin/python
MATURIN_DEVELOP := cd allocate-py && VIRTUAL_ENV=$(VENV) $(VENV)/bin/maturin develop --locked

test-py: $(VENV_STAMP) ## Build allocate-py into .venv (debug); pytest, stubtest of the .pyi, mypy --strict on examples/python, run the harnesses (blocking and asyncio)
	$(MATURIN_DEVELOP)
	$(PY) -m pytest allocate-py/tests
	$(PY) -m mypy.stubtest allocate._allocate
	$(PY) -m mypy --strict examples/python
	$(PY) examples/python/harness.py
	$(PY) examples/python/harness_async.py

WHEEL_DIR := $(TARGET_DIR)/wheels

wheel: $(VENV_STAMP) ## Build the Python wheel (release, abi3, manylinux-tagged and checked by maturin's auditwheel) into target/wheels
	rm -rf $(WHEEL_DIR)
	cd allocate-py && $(VENV)/bin/maturin build --release --locked --auditwheel check --out $(WHEEL_DIR)

test-wheel: wheel ## The wheel as a user installs it: into a fresh venv with no Rust, then the allocate command and a client of an in-process server
	scripts/test-wheel.sh $(PYTHON) $(WHEEL_DIR)

bench-py: $(VENV_STAMP) ## Allocate+release cycles/s through the Python engine binding vs Rust, in one run (release build)
	$(MATURIN_DEVELOP) --release
	$(PY) allocate-py/bench/engine_cycles.py

clean: ## cargo clean, and remove .venv and .tools
	cargo clean
	rm -rf $(VENV) $(TOOLS_DIR)

bench: ## Run the benchmarks: cargo bench --workspace
	cargo bench --workspace --locked

# The whole service under load (BENCHMARKS.md): the release server as a separate process on a
# loopback port, simulated agents and users from allocate-loadgen, a summary table at the end.
# Every phase is bounded in count and time; the main set takes about two minutes. Pass other
# flags with LOADTEST_ARGS, e.g. `make loadtest LOADTEST_ARGS="--scenario cycles --secs 5"`.
# 10,000 agents are 10,000 sockets on each side: the open files limit is raised where allowed
# (the load generator raises its own to the hard limit, and the server inherits it).
LOADTEST_ARGS ?=
.PHONY: loadtest
loadtest: ## Load test the whole service over loopback (release builds, about 2 minutes); see BENCHMARKS.md
	cargo build --release --locked -p allocate-http -p allocate-loadgen
	ulimit -n 65536 2>/dev/null || true; \
	target/release/allocate-loadgen --server-bin target/release/allocate-http $(LOADTEST_ARGS)

# Fuzzing (docs/fuzzing.md): cargo-fuzz targets for every parser of client input, the agent's
# reader of the server's messages, snapshot restore and random input sequences into the engine,
# each run for FUZZ_SECS seconds, one after the other, in one process. The committed seeds and crash regressions are replayed first
# (`cargo test` in fuzz/). The corpus grows in fuzz/corpus/<target>/ (git-ignored); a crash
# lands in fuzz/artifacts/<target>/ and stops the run. cargo-fuzz needs nightly-only compiler
# flags (-Zsanitizer, sancov passes); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
# No sanitizer: the core forbids unsafe code, so the run goes at about twice the speed; overflow
# checks and debug assertions stay on. Not part of `make test`. Examples:
#   make fuzz FUZZ_SECS=600 FUZZ_TARGETS=engine_sequence
#   make fuzz FUZZ_ARGS=-only_ascii=1
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ_STAMP := $(TOOLS_DIR)/.cargo-fuzz-$(CARGO_FUZZ_VERSION).stamp
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= agent_message server_message allocate_request patch_bodies inventory_query snapshot_restore engine_sequence
FUZZ_ARGS ?=
# Longest input per target (-max_len), in bytes: room for the largest seed and then some.
FUZZ_MAX_LEN_agent_message := 4096
FUZZ_MAX_LEN_server_message := 2048
FUZZ_MAX_LEN_allocate_request := 2048
FUZZ_MAX_LEN_patch_bodies := 512
FUZZ_MAX_LEN_inventory_query := 1024
FUZZ_MAX_LEN_snapshot_restore := 8192
FUZZ_MAX_LEN_engine_sequence := 4096

$(CARGO_FUZZ_STAMP):
	cargo install --locked --quiet cargo-fuzz --version $(CARGO_FUZZ_VERSION) --root $(TOOLS_DIR)
	touch $@

# One target's run (a canned recipe, expanded once per target). libFuzzer's progress lines and
# recommended dictionary are left out; its final stats (executions, new inputs) and the corpus
# size are printed.
define FUZZ_ONE
	@echo "fuzz: $(1) for $(FUZZ_SECS) s"
	cd fuzz && mkdir -p corpus/$(1) && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $(1) \
		corpus/$(1) seeds/$(1) $(patsubst fuzz/%,%,$(wildcard fuzz/regressions/$(1))) -- \
		-max_total_time=$(FUZZ_SECS) -max_len=$(FUZZ_MAX_LEN_$(1)) -timeout=10 \
		-print_final_stats=1 $(FUZZ_ARGS) 2>&1 | grep -v -E '^(#[0-9]+[[:space:]]+(NEW|REDUCE|RELOAD|pulse)[[:space:]]|"|###### )'
	@echo "fuzz: $(1): corpus of $$(ls fuzz/corpus/$(1) | wc -l) files"

endef

.PHONY: fuzz
fuzz: $(CARGO_FUZZ_STAMP) ## Fuzz the parsers and the engine, FUZZ_SECS (60) seconds per target; see docs/fuzzing.md
	cd fuzz && cargo test --locked --quiet
	$(foreach target,$(FUZZ_TARGETS),$(call FUZZ_ONE,$(target)))
