# faultheap build.  `make` builds the libraries, `make test` runs the cmocka
# suites, `make check-asan` runs them under ASan+UBSan, `make bench` runs the
# default benchmark table.  Every target that needs Debian packages runs
# `make deps` first.

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O2
VERSION := 0.1.0

# liburcu-dev: only its plain list header (urcu/list.h); no liburcu library
# is linked (see README, "Dependencies, and why").
PKGS      := jemalloc
DEB_PKGS  := libjemalloc-dev liburcu-dev libcmocka-dev libgc-dev libmimalloc-dev pkg-config \
             gnuplot-nox

# pkg-config is itself one of the packages `make deps` installs, so fall back
# to the plain library names when it is missing.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljemalloc)

# jemalloc, private to the library, where its PIC archive is installed
# (Debian's libjemalloc-dev ships it).  Linked as it is, jemalloc exports
# malloc and free, and so serves the whole process's malloc, and its
# constructor initialises it at process start, ~1 MiB resident (code and
# metadata) in every process, even one whose heap never starts an arena.
# The copy in $(JE_PRIVATE) has every symbol it defines renamed fh_je_*
# (the library calls fh_je_mallocx and the like, -D below), so the process
# keeps its own malloc, and no constructor: jemalloc initialises on the
# library's first call.  Its pthread_atfork becomes fh_jemalloc_atfork
# (heap/fork.c), which runs jemalloc's fork handlers inside the heap's, in
# the order the constructor gave them.  libfaultheap.a holds the copy and
# libfaultheap.so links it hidden: neither needs -ljemalloc.  Without the
# archive, the system's jemalloc is linked as it is.
JE_PIC     := $(shell p=$$($(CC) -print-file-name=libjemalloc_pic.a 2>/dev/null); [ -f "$$p" ] && echo "$$p")
JE_API     := mallocx rallocx xallocx sallocx dallocx sdallocx nallocx mallctl \
              mallctlnametomib mallctlbymib malloc_stats_print
ifneq ($(JE_PIC),)
JE_PRIVATE := $(BUILD)/jemalloc/libjemalloc_private.a
JE_CFLAGS  := -DFH_JEMALLOC_PRIVATE $(foreach f,$(JE_API),-D$(f)=fh_je_$(f))
LIBS       := -lpthread -ldl -lm
else
LIBS       := $(PKG_LIBS) -lpthread -ldl -lm
endif

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fvisibility=hidden -fPIC \
              -Iinclude -I. $(PKG_CFLAGS) $(JE_CFLAGS) $(CFLAGS) $(EXTRA_CFLAGS)

LIB_SRCS := $(wildcard heap/*.c spaces/*.c collectors/*.c uffd/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
DEPS     := $(LIB_OBJS:.o=.d)

TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(wildcard tests/support_*.c)

BENCH_SRCS := $(filter-out bench/baseline_%.c,$(wildcard bench/*.c))
EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

.PHONY: all lib test check check-fork check-faults check-asan check-tsan fuzz bench install deps clean examples

all: lib examples $(BUILD)/fhbench

lib: $(BUILD)/libfaultheap.a $(BUILD)/libfaultheap.so

# The objects follow the jemalloc flags (JE_CFLAGS: whether the library
# calls the private copy's fh_je_* names): a build that gains or loses the
# PIC archive must not reuse the other kind.  The stamp is rewritten only
# when the flags change.
JE_STAMP := $(BUILD)/jemalloc-flags
$(JE_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(JE_CFLAGS)' | cmp -s - $@ || echo '$(JE_CFLAGS)' > $@
.PHONY: FORCE
FORCE:

$(BUILD)/obj/%.o: %.c $(JE_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libfaultheap.a: $(LIB_OBJS) $(JE_PRIVATE)
	@mkdir -p $(dir $@)
	rm -f $@ && $(if $(JE_PRIVATE),cp $(JE_PRIVATE) $@ && )ar rcs $@ $(LIB_OBJS)

$(BUILD)/libfaultheap.so: $(LIB_OBJS) $(JE_PRIVATE)
	$(CC) -shared -Wl,-soname,libfaultheap.so.0 -o $@ $(LIB_OBJS) \
	  $(if $(JE_PRIVATE),$(JE_PRIVATE) -Wl$(comma)--exclude-libs$(comma)ALL -static-libgcc) $(LIBS)

# The private copy (above): every defined global renamed, pthread_atfork
# redirected, the constructor's .init_array entry dropped, and the C++
# operators' object left out (nothing reaches it once malloc is renamed,
# and it needs libstdc++: a C program linking libfaultheap.a with
# --whole-archive would fail).  (The shared library takes libgcc's
# unwinder statically: jemalloc's profiling, never turned on, refers to
# it.)  Its code goes in .text.unlikely.fh_je, which GNU ld's default
# script places with the cold code at the front of .text: only the
# mark_sweep collector and fh_malloc run it, and mixed in with the
# library's hot code (where the link order left it) it filled the 64 KiB
# windows the kernel's fault-around maps whole: fhscheme's resident text
# 508 -> 444 KiB on a small program.  Placement only: the code is the same.
comma := ,
$(JE_PRIVATE): $(JE_PIC) Makefile
	@rm -rf $(dir $@) && mkdir -p $(dir $@)objs
	cd $(dir $@)objs && ar x $(JE_PIC) && rm -f jemalloc_cpp.pic.o
	nm -g --defined-only $(JE_PIC) | awk 'NF == 3 { print $$3, "fh_je_" $$3 }' | sort -u > $(dir $@)rename
	echo "pthread_atfork fh_jemalloc_atfork" >> $(dir $@)rename
	objcopy --remove-section=.init_array --remove-section=.rela.init_array $(dir $@)objs/jemalloc.pic.o
	for o in $(dir $@)objs/*.o; do objcopy --redefine-syms=$(dir $@)rename \
	  --rename-section .text=.text.unlikely.fh_je $$o || exit 1; done
	ar rcs $@ $(dir $@)objs/*.o

# Tests link the static library, so they can reach internal (hidden) symbols.
# The suites' own headers (tests/*.h) count too: a stale binary built
# against an older struct layout fails in ways that look like bugs.
$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(wildcard tests/*.h) $(BUILD)/libfaultheap.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(TEST_SUPPORT) $(BUILD)/libfaultheap.a \
	  $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka) $(LIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libfaultheap.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libfaultheap.a $(LIBS)

# fhscheme (issue 20): the Scheme interpreter on faultheap's public API, and
# the same source on Boehm GC as the baseline (make fhscheme-bdw).
SCHEME_SRCS := $(wildcard examples/scheme/*.c)
SCHEME_HDRS := $(wildcard examples/scheme/*.h) $(wildcard examples/scheme/parts/*.c)
# Values are words punned as pointers to heap structs (nodes, frames, flonums).
SCHEME_CFLAGS := -fno-strict-aliasing -DFHS_LIBDIR=\"$(CURDIR)/examples/scheme/lib\"
# With the private jemalloc (JE_PRIVATE, above), libgcc statically: the
# copy's profiling code names libgcc's unwinder, which would map
# libgcc_s.so for nothing.  Not under a sanitizer, whose runtime wants it
# shared.
SCHEME_JEMALLOC := $(LIBS)$(if $(and $(JE_PRIVATE),$(if $(findstring -fsanitize,$(EXTRA_CFLAGS)),,y)), -static-libgcc)
$(BUILD)/fhscheme: $(SCHEME_SRCS) $(SCHEME_HDRS) $(BUILD)/libfaultheap.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SCHEME_CFLAGS) -o $@ $(SCHEME_SRCS) $(BUILD)/libfaultheap.a $(SCHEME_JEMALLOC)

$(BUILD)/fhscheme-bdw: $(SCHEME_SRCS) $(SCHEME_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SCHEME_CFLAGS) -DFHS_BDW -o $@ $(SCHEME_SRCS) -lgc -lpthread -lm

.PHONY: fhscheme fhscheme-bdw
fhscheme: $(BUILD)/fhscheme
fhscheme-bdw: $(BUILD)/fhscheme-bdw

examples: $(EXAMPLE_BINS) $(BUILD)/fhscheme

# The benchmark runner links faultheap; each baseline allocator is a separate
# program built from the same workload source, because linking jemalloc,
# mimalloc or Boehm GC replaces malloc for the whole process.
# fhbench links as fhscheme does: its children's peak RSS is what the
# Whippet comparisons measure (docs/architecture.md, issue 19).
BENCH_JEMALLOC := $(SCHEME_JEMALLOC)
$(BUILD)/fhbench: $(BENCH_SRCS) $(wildcard bench/*.h) $(BUILD)/libfaultheap.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ibench -o $@ $(BENCH_SRCS) $(BUILD)/libfaultheap.a $(BENCH_JEMALLOC)
	@if [ -f bench/baselines.mk ]; then $(MAKE) --no-print-directory -f bench/baselines.mk BUILD=$(BUILD) CC="$(CC)"; fi

deps:
	@sh .ci/deps.sh $(DEB_PKGS)

test: deps
	@$(MAKE) --no-print-directory lib
	@$(MAKE) --no-print-directory $(TEST_BINS) examples
	@sh tests/run.sh $(BUILD) $(TEST_BINS)

check: test

# The fork torture at 100 forks per configuration whatever the environment
# says (`make test` runs it at its default, also 100 outside sanitizers).
check-fork: deps
	@$(MAKE) --no-print-directory lib
	@$(MAKE) --no-print-directory $(BUILD)/tests/test_fork_torture
	@FH_TORTURE_ITERS=100 sh tests/run.sh $(BUILD) $(BUILD)/tests/test_fork_torture

# Fault injection: every failing call of heap/sys.h, at its Nth call, once
# and from then on, on every collector (tests/faults_sweep.c).
# FH_FAULT_SAMPLES bounds the points swept per call kind (default 160:
# every call of every kind but jemalloc's, which is sampled).
$(BUILD)/tests/faults_sweep: tests/faults_sweep.c $(BUILD)/libfaultheap.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libfaultheap.a $(LIBS)

check-faults: deps
	@$(MAKE) --no-print-directory $(BUILD)/tests/faults_sweep
	$(BUILD)/tests/faults_sweep

# ASan + UBSan build of the library and tests, in its own build directory.
check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  lib
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  $(TEST_BINS:$(BUILD)/%=build-asan/%) build-asan/fhscheme
	@FH_TEST_SANITIZER=asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:handle_sigbus=0:allow_user_segv_handler=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tests/run.sh build-asan $(TEST_BINS:$(BUILD)/%=build-asan/%)

check-tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=thread" $(TEST_BINS:$(BUILD)/%=build-tsan/%) build-tsan/fhscheme
	@# A suite may take 5-15x its time under TSan (test_sys_faults: 7 min on
	@# a loaded 2-CPU machine), so the hang bound is longer than run.sh's 300 s.
	@FH_TEST_SANITIZER=tsan TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  FH_TEST_TIMEOUT=$${FH_TEST_TIMEOUT:-1200} sh tests/run.sh build-tsan $(TEST_BINS:$(BUILD)/%=build-tsan/%)

# libFuzzer (clang) on the image loader for FUZZ_TIME seconds, from a seed
# corpus of small valid images that fuzz/make_corpus.c writes.  Crashing
# inputs land in build-fuzz/ (crash-*); each one found becomes a test.
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
fuzz: deps
	@sh .ci/deps.sh $(FUZZ_DEB_PKGS)
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 \
	  EXTRA_CFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" lib
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -o build-fuzz/fuzz_image \
	  fuzz/fuzz_image.c build-fuzz/libfaultheap.a $(LIBS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -o build-fuzz/make_corpus \
	  fuzz/make_corpus.c build-fuzz/libfaultheap.a $(LIBS)
	@rm -rf build-fuzz/seeds && mkdir -p build-fuzz/seeds build-fuzz/corpus
	build-fuzz/make_corpus build-fuzz/seeds
	ASAN_OPTIONS=detect_leaks=1:handle_sigbus=0 build-fuzz/fuzz_image -max_total_time=$(FUZZ_TIME) \
	  -max_len=65536 -artifact_prefix=build-fuzz/ -print_final_stats=1 \
	  build-fuzz/corpus build-fuzz/seeds

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/fhbench
	$(BUILD)/fhbench default

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/faultheap.h include/faultheap_inline.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libfaultheap.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libfaultheap.so $(DESTDIR)$(PREFIX)/lib/libfaultheap.so.$(VERSION)
	ln -sf libfaultheap.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libfaultheap.so.0
	ln -sf libfaultheap.so.0 $(DESTDIR)$(PREFIX)/lib/libfaultheap.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	  -e 's|@REQUIRES_PRIVATE@|$(if $(JE_PRIVATE),,Requires.private: jemalloc\n)|' faultheap.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/faultheap.pc

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(DEPS)
