# allocate: build, test and lint entry points. `make` (or `make help`) lists them.
#
# Tools install themselves on first use, into git-ignored folders at the repo root:
#   .venv/   Python venv with requirements-dev.txt (maturin, pytest, shellcheck)
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

.PHONY: help run shell venv tools lint test tests test-complexity test-security \
	test-lint-shellcheck clean bench test-c header

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

# Further test suites (the allocate-py wheel with maturin + pytest in .venv)
# are appended to this recipe; give `test` the $(VENV_STAMP) prerequisite then.
test: ## Run the test suites: cargo tests, then the C API's tests (test-c)
	cargo test --workspace --locked
	$(MAKE) --no-print-directory test-c

tests: test lint test-complexity test-security test-lint-shellcheck ## test + every linter: lint, test-complexity, test-security, test-lint-shellcheck

test-complexity: ## clippy with cognitive_complexity denied (threshold 20, in clippy.toml)
	cargo clippy --workspace --all-targets --locked -- -D warnings -D clippy::cognitive_complexity

test-security: $(CARGO_DENY_STAMP) ## cargo-deny licenses/bans/sources; advisories only if the DB can be fetched
	cargo deny --locked check licenses bans sources
	scripts/deny-advisories.sh

test-lint-shellcheck: $(VENV_STAMP) ## shellcheck .ci/run, scripts/*.sh and every *.sh in git
	SHELLCHECK=$(VENV)/bin/shellcheck scripts/shellcheck-all.sh

# The C API: static and shared library, the header, pkg-config, C and C++ programs.
C_OUT := $(CURDIR)/target/c
C_LIB_DIR := $(CURDIR)/target/debug
CFLAGS_C := -std=c11 -Wall -Wextra -Werror -g
VALGRIND := valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect

header: ## Regenerate include/allocate.h with cbindgen (a test fails when it is stale)
	ALLOCATE_BLESS=1 cargo test -p allocate-c --test header --locked

test-c: ## Build the C library; compile examples/c and the C tests (-Werror, static and shared), C++ too; run them, also under valgrind
	cargo build -p allocate-c --locked
	command -v valgrind >/dev/null || scripts/apt-install.sh valgrind
	command -v pkg-config >/dev/null || scripts/apt-install.sh pkg-config
	mkdir -p $(C_OUT)
	sed -e 's|@PREFIX@|$(CURDIR)|' -e 's|@LIBDIR@|$(C_LIB_DIR)|' -e 's|@INCLUDEDIR@|$(CURDIR)/include|' \
		-e 's|@VERSION@|$(shell cargo pkgid -p allocate-c | sed 's/.*[#@]//')|' allocate-c/allocate.pc.in > $(C_OUT)/allocate.pc
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

clean: ## cargo clean, and remove .venv and .tools
	cargo clean
	rm -rf $(VENV) $(TOOLS_DIR)

bench: ## Run the benchmarks: cargo bench --workspace
	cargo bench --workspace --locked
