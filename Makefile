# rapport — build, test, demo and benchmark.
#
#   make                 build bin/rapport
#   make test            every test
#   make demo            the whole pipeline on one machine, 30 s
#   make test SANITIZE=address,undefined   the suite under ASan/UBSan
#   make valgrind        the decoder tests under valgrind, no leak allowed
#   make bench           the benchmark of BENCHMARKS.md (a few minutes)
#   make bench-cluster   one Redis against a local Redis Cluster (docs/SCALING.md)
#   make docs            regenerate docs/CONFIG.md
#   make check-docs      docs/CONFIG.md is current, every SPEC §n citation resolves
#   make check-deploy    the deploy/ files, as far as a machine without Docker can
#   make fuzz            each libFuzzer harness of fuzz/ for FUZZ_SECONDS (300) s
#   make fuzz-ci         the same for 60 s each; fails on any crash, leak or UB
#
# On a fresh Debian 12 machine each of these first installs the missing
# packages (target deps: deploy/install-deps.sh, with sudo when not root;
# nothing to do when all are present), then runs make again for the work
# itself, so that pkg-config's flags are read once the libraries are there.
#
# Project flags live in RAPPORT_CFLAGS; CFLAGS/LDFLAGS stay the user's.

CC      ?= cc
CFLAGS  ?= -O2 -g
LDFLAGS ?=
WERROR  ?= $(if $(CI),-Werror,)

PKGS := rdkafka avro-c hiredis jansson libcurl libmicrohttpd openssl
DEPS_OK := $(shell pkg-config --exists $(PKGS) criterion 2>/dev/null && command -v redis-server >/dev/null && echo yes)
# The dashboard's tests render its page in headless Chromium.
TEST_DEPS_OK := $(shell command -v chromium >/dev/null && echo yes)

RAPPORT_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wstrict-prototypes -Wwrite-strings \
                  -Wno-unused-parameter $(WERROR) -MMD -MP -I. \
                  $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
RAPPORT_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm

ifneq ($(SANITIZE),)
BUILD := build/san
RAPPORT_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
RAPPORT_LDFLAGS := -fsanitize=$(SANITIZE)
else
BUILD := build/default
RAPPORT_LDFLAGS :=
endif

LIB_SRC  := $(wildcard common/*.c consumer/*.c scoring/*.c batch/*.c sinks/*.c gen/*.c report/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
SUP_SRC  := $(wildcard tests/support/*.c)
SUP_OBJ  := $(SUP_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBA     := $(BUILD)/librapport.a

# bin/rapport is always the default (non-sanitized) build unless SANITIZE is set,
# in which case the sanitized binary is used by the tests it runs.
RAPPORT_BIN := $(if $(SANITIZE),$(BUILD)/rapport,bin/rapport)

# Objects and test support files are never intermediate: keep them between runs.
.SECONDARY:

.PHONY: all deps test-deps test unit valgrind demo bench bench-cluster clean docs check-docs check-deploy \
        fuzz fuzz-build fuzz-ci
all: deps
	@$(MAKE) --no-print-directory bin/rapport

deps:
ifneq ($(DEPS_OK),yes)
	@echo "rapport: installing missing packages (deploy/install-deps.sh)"
	@deploy/install-deps.sh
endif

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(RAPPORT_CFLAGS) $(CFLAGS) -c $< -o $@

# The dashboard's page is built into the binary with .incbin.
$(BUILD)/report/dashboard.o: report/dashboard.html

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(RAPPORT_BIN): $(CLI_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(RAPPORT_LDFLAGS) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIBA) $(RAPPORT_LIBS)

ifneq ($(SANITIZE),)
bin/rapport:
	$(MAKE) SANITIZE= bin/rapport
endif

$(BUILD)/tests/%: tests/%.c $(SUP_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(RAPPORT_CFLAGS) $(CFLAGS) $(RAPPORT_LDFLAGS) $(LDFLAGS) -o $@ $< $(SUP_OBJ) $(LIBA) \
	    $(RAPPORT_LIBS) $$(pkg-config --libs criterion)

test-deps: deps
ifneq ($(TEST_DEPS_OK),yes)
	@echo "rapport: installing what the tests need (deploy/install-deps.sh)"
	@deploy/install-deps.sh
endif

# Tests find the binary under test through RAPPORT_BIN.
test: test-deps
	@$(MAKE) --no-print-directory unit
ifeq ($(SANITIZE),)
	@$(MAKE) --no-print-directory valgrind
	@$(MAKE) --no-print-directory check-docs
	@$(MAKE) --no-print-directory check-deploy
endif

unit: $(RAPPORT_BIN) $(TESTS)
	@set -e; failed=; for t in $(TESTS); do \
	    echo "== $$t"; \
	    RAPPORT_BIN=$(RAPPORT_BIN) LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	        $$t --jobs 2 || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "unit tests: FAILED:$$failed"; exit 1; fi; echo "unit tests: all passed"

valgrind: deps
	@$(MAKE) --no-print-directory $(BUILD)/tests/test_decode
	@command -v valgrind >/dev/null || { echo "valgrind missing: run deploy/install-deps.sh"; exit 1; }
	valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    --show-leak-kinds=definite,indirect --trace-children=yes \
	    $(BUILD)/tests/test_decode --jobs 1

docs: deps
	@$(MAKE) --no-print-directory bin/rapport
	bin/rapport config-doc > docs/CONFIG.md

# docs/CONFIG.md matches the configuration table, and every "SPEC §n"
# citation in the code and the docs names a section of docs/SPEC.md.
check-docs: deps
	@$(MAKE) --no-print-directory bin/rapport
	@bin/rapport config-doc | diff -u docs/CONFIG.md - \
	    || { echo "docs/CONFIG.md is stale: run 'make docs'"; exit 1; }
	@tests/check_spec_refs.sh

# What can be checked of deploy/ without a Docker engine or a cluster.
check-deploy: deps
	@deploy/check.sh

demo: deps
	@$(MAKE) --no-print-directory bin/rapport
	bin/rapport demo $(DEMO_ARGS)

# bench/*.c: one program each, linked with the library (BENCHMARKS.md).
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

$(BUILD)/bench/%: bench/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(RAPPORT_CFLAGS) $(CFLAGS) $(RAPPORT_LDFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(RAPPORT_LIBS)

# The baseline the benchmark measures side by side with the working tree
# ("today" in its table): the last commit before this round of performance
# work.  BENCH_BASELINE=none measures the working tree alone.
BENCH_BASELINE ?= 3dfeb91f121e8d3d8551bd359a6e7ea2c26757ed

bench: deps
	@$(MAKE) --no-print-directory bin/rapport $(BENCH_BIN)
	@base=; if [ "$(BENCH_BASELINE)" != none ] && bench/baseline.sh $(BENCH_BASELINE); then \
	    base=build/baseline/$(BENCH_BASELINE); fi; \
	BENCH_BIN_DIR=$(BUILD)/bench BENCH_BASE_DIR=$$base BENCH_BASELINE=$(BENCH_BASELINE) bench/run.sh $(BENCH_ARGS)

# rapport's write pattern on one Redis and on a local 3-master Redis Cluster
# (docs/SCALING.md); one to three minutes, depending on the load.
bench-cluster: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench/cluster
	BENCH_BIN_DIR=$(BUILD)/bench bench/cluster.sh

# ---- fuzzing (docs/DESIGN.md, "Fuzzing") ----
# The harnesses (fuzz/fuzz_NAME.c) and a copy of the library compiled with
# clang for libFuzzer, ASan and UBSan, apart from the gcc build.  Each run
# starts from the seeds in fuzz/corpus/NAME/ and keeps what it finds in
# build/fuzz/corpus/NAME/; a crash, leak, UB report or timeout is saved as
# build/fuzz/artifacts/NAME-crash-… (replay: build/fuzz/fuzz_NAME FILE).
FUZZ_CC      ?= clang
FUZZ_CFLAGS  ?= -O1 -g
FUZZ_SECONDS ?= 300
FUZZ_RSS_MB  ?= 2048
FUZZ_DIR     := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_OBJ     := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_SRC     := $(wildcard fuzz/fuzz_*.c)
FUZZERS      := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_NAMES   := $(FUZZ_SRC:fuzz/fuzz_%.c=%)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(RAPPORT_CFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_DIR)/librapport.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

# `rapport top`'s reading of Redis (cli/view.c) is fuzzed too.
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_DIR)/librapport.a $(FUZZ_DIR)/obj/cli/view.o
	$(FUZZ_CC) $(RAPPORT_CFLAGS) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer \
	    -DFUZZ_SCHEMA_DIR='"$(CURDIR)/fuzz/schemas"' -o $@ $< $(FUZZ_DIR)/obj/cli/view.o \
	    $(FUZZ_DIR)/librapport.a $(RAPPORT_LIBS)

fuzz-build: $(FUZZERS)

# Runs every harness for FUZZ_SECONDS, one after another, and fails when
# any of them found something.  Leak detection is on (LSan, after every
# input that allocates more than it frees); fuzz/lsan.supp holds the one
# known third-party leak.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/artifacts; fail=0; for h in $(FUZZ_NAMES); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$h; \
	    dict=; [ -f fuzz/$$h.dict ] && dict=-dict=fuzz/$$h.dict; \
	    echo "== fuzz $$h: $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$$h.log)"; \
	    if ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	        LSAN_OPTIONS=suppressions=$(CURDIR)/fuzz/lsan.supp \
	        $(FUZZ_DIR)/fuzz_$$h $(FUZZ_DIR)/corpus/$$h fuzz/corpus/$$h $$dict \
	            -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_MB) -timeout=30 \
	            -detect_leaks=1 -print_final_stats=1 \
	            -artifact_prefix=$(FUZZ_DIR)/artifacts/$$h- >$(FUZZ_DIR)/$$h.log 2>&1; then \
	        grep -E '^#[0-9]+[[:space:]]+DONE' $(FUZZ_DIR)/$$h.log | tail -1; \
	        grep -E '^stat::number_of_executed_units' $(FUZZ_DIR)/$$h.log; \
	    else \
	        fail=1; tail -60 $(FUZZ_DIR)/$$h.log; echo "fuzz $$h: FAILED (see above)"; \
	    fi; \
	done; \
	if [ $$fail -ne 0 ]; then echo "fuzzing: FAILED"; exit 1; fi; echo "fuzzing: nothing found"

fuzz-ci:
	@$(MAKE) --no-print-directory -j2 fuzz-build
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=60

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
