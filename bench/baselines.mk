# Peer baselines: each workload source built once per allocator as a
# separate program in $(BUILD)/bench/, because linking jemalloc, mimalloc or
# Boehm GC replaces malloc for the whole process.  The top-level Makefile runs
#     make -f bench/baselines.mk BUILD=build CC=cc
# after building fhbench.  An allocator whose development package is missing
# is skipped with a note (fhbench then prints "(not built)" for it).

BUILD ?= build
CC    ?= cc
OUT   := $(BUILD)/bench

BL_CFLAGS := -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow \
             -Wstrict-prototypes -Wmissing-prototypes -Ibench
BL_LIBS   := -ldl -lm

HASH := \#
# $(call links,<#include line or empty>,<flags>): "yes" if a program using
# them compiles and links
links = $(shell printf '%s\nint main(void) { return 0; }\n' '$(1)' | \
          $(CC) -x c - -o /dev/null $(2) 2>/dev/null && echo yes)

BOEHM_CFLAGS := $(shell pkg-config --cflags bdw-gc 2>/dev/null)
BOEHM_LIBS   := $(shell pkg-config --libs bdw-gc 2>/dev/null || echo -lgc)

HAVE_glibc    := yes
HAVE_jemalloc := $(call links,,-ljemalloc)
HAVE_mimalloc := $(call links,,-lmimalloc)
HAVE_boehm    := $(call links,$(HASH)include <gc.h>,$(BOEHM_CFLAGS) $(BOEHM_LIBS))

DEFINE_glibc    := -DGCB_GLIBC
DEFINE_jemalloc := -DGCB_JEMALLOC
DEFINE_mimalloc := -DGCB_MIMALLOC
DEFINE_boehm    := -DGCB_BOEHM $(BOEHM_CFLAGS)
LINK_glibc      :=
LINK_jemalloc   := -ljemalloc
LINK_mimalloc   := -lmimalloc
LINK_boehm      := $(BOEHM_LIBS)

VARIANTS := glibc jemalloc mimalloc boehm
BUILT    := $(foreach v,$(VARIANTS),$(if $(HAVE_$(v)),$(v)))
SKIPPED  := $(filter-out $(BUILT),$(VARIANTS))

GCBENCH_SRC := bench/baseline_gcbench.c bench/gcbench_core.h bench/binarytrees_core.h \
               bench/baselines.mk
# fragmentation: malloc baselines only (Boehm has no explicit free)
FRAG_VARIANTS := $(filter glibc jemalloc mimalloc,$(BUILT))
FRAG_SRC := bench/baseline_frag.c bench/frag_core.h bench/baselines.mk
FRAG_DEFINE_glibc    := -DFRAG_GLIBC
FRAG_DEFINE_jemalloc := -DFRAG_JEMALLOC
FRAG_DEFINE_mimalloc := -DFRAG_MIMALLOC

.PHONY: all skipped
all: $(BUILT:%=$(OUT)/gcbench-%) $(FRAG_VARIANTS:%=$(OUT)/frag-%) skipped

$(OUT)/frag-%: $(FRAG_SRC)
	@mkdir -p $(OUT)
	$(CC) $(BL_CFLAGS) $(FRAG_DEFINE_$*) -o $@ bench/baseline_frag.c $(LINK_$*) $(BL_LIBS)

$(OUT)/gcbench-%: $(GCBENCH_SRC)
	@mkdir -p $(OUT)
	$(CC) $(BL_CFLAGS) $(DEFINE_$*) -o $@ bench/baseline_gcbench.c $(LINK_$*) $(BL_LIBS)

# a stale binary of an allocator that is gone would fail at run time
skipped:
	@for v in $(SKIPPED); do \
	  echo "baselines: $$v is not installed, skipping gcbench-$$v"; \
	  rm -f $(OUT)/gcbench-$$v; \
	done
