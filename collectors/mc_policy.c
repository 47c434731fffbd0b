/* The slide-or-flip choice of concurrent_compact (mc_policy.h). */
#include "collectors/mc_policy.h"

#include <stdlib.h>

/* Defaults: see docs/architecture.md ("Choosing per cycle") for how they
 * were measured.  The rates are learned from every slide; the flip's
 * fixed cost is not learned (a flip's costs are spread over the mutators'
 * faults and three threads), only overridable. */
#define DEFAULT_UPDATE_NS_PER_BYTE 0.25
#define DEFAULT_MOVE_NS_PER_BYTE 0.15
#define DEFAULT_FLIP_FIXED_NS 2000000.0
/* fhbench pins, concurrent_compact: 6.8 ms for the pages of 3,000 pinned
 * nodes, ~60% of it in UFFDIO_COPY (page allocation, copy, memcg charge). */
#define DEFAULT_PINNED_PAGE_NS 2300.0

/* A first-touch fault per 4 KiB page on this VM (/tmp/touch.c: 64 MiB
 * touched a page at a time, 3 runs): 2.4-2.5 us with 4 KiB pages, 0.5 us
 * per 4 KiB with huge pages once the host has backed them (14 us the
 * first time).  The cheap figure for THP: a slide must not be chosen on a
 * cost the host charges only sometimes. */
#define REFAULT_NS 2400.0
#define REFAULT_THP_NS 500.0
#define EXTRA_MAX 7.0
/* A flip's pause without its pinned pages until one is measured (fhbench
 * pause's flip pauses of a split remark: 0.3-0.5 ms; docs/architecture.md). */
#define FLIP_PAUSE_NS 400000.0
/* What a slide may take over its rates' estimate, as learned: below, a
 * slide with nothing to update outside; above, a preempted one. */
#define PAUSE_SCALE_MIN 0.5
#define PAUSE_SCALE_MAX 8.0

void mc_policy_init(mc_slide_model *p) {
  p->update_ns_per_byte = DEFAULT_UPDATE_NS_PER_BYTE;
  p->move_ns_per_byte = DEFAULT_MOVE_NS_PER_BYTE;
  p->flip_fixed_ns = DEFAULT_FLIP_FIXED_NS;
  p->pinned_page_ns = DEFAULT_PINNED_PAGE_NS;
  p->pause_slide_scale = 1.0;
  p->pause_flip_ns = FLIP_PAUSE_NS;
  p->force = -1;
  const char *f = getenv("FH_MC_SLIDE");
  if (f && (*f == '0' || *f == '1')) p->force = *f - '0';
  const char *c = getenv("FH_MC_FLIP_COST_US");
  if (c && *c) p->flip_fixed_ns = strtod(c, NULL) * 1000.0;
}

uint64_t mc_policy_slide_ns(const mc_slide_model *p, size_t live_bytes, size_t move_bytes) {
  return (uint64_t)(p->update_ns_per_byte * (double)live_bytes +
                    p->move_ns_per_byte * (double)move_bytes);
}

int mc_policy_choose_slide(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                           uint64_t *est_ns) {
  return mc_policy_choose_slide_pinned(p, live_bytes, move_bytes, 0, est_ns);
}

int mc_policy_choose_slide_pinned(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                                  size_t pinned_pages, uint64_t *est_ns) {
  return mc_policy_choose_slide_extra(p, live_bytes, move_bytes, pinned_pages, 0, est_ns);
}

int mc_policy_choose_slide_extra(const mc_slide_model *p, size_t live_bytes, size_t move_bytes,
                                 size_t pinned_pages, double extra_ns, uint64_t *est_ns) {
  uint64_t est = mc_policy_slide_ns(p, live_bytes, move_bytes);
  if (est_ns) *est_ns = est;
  if (p->force >= 0) return p->force;
  return (double)est < p->flip_fixed_ns + p->pinned_page_ns * (double)pinned_pages + extra_ns;
}

double mc_policy_flip_extra_ns(const mc_slide_model *p, size_t refault_bytes, size_t young_kept,
                               int thp) {
  double fault = (thp ? REFAULT_THP_NS : REFAULT_NS) / 4096.0; /* per byte */
  double extra = fault * (double)(refault_bytes + young_kept) +
                 (double)mc_policy_slide_ns(p, young_kept, young_kept);
  /* These costs are the mutators' time spread over the cycle, a pause is
   * one stop: they may lengthen a pause up to EXTRA_MAX x the flip's fixed
   * cost (16 ms by default, ~40 MiB of slide), no more.  Uncapped,
   * binary-trees' full collections of 108 MiB slid in 110-190 ms pauses
   * where they flipped in 40-65. */
  double cap = p->flip_fixed_ns * EXTRA_MAX;
  return extra < cap ? extra : cap;
}


/* A concurrently marked cycle's slide, before its scale: the default
 * rates, not the learned ones, which drift back on every flip (the scale
 * learned against them would then drift too). */
static double pause_base_ns(size_t live_bytes, size_t move_bytes) {
  return DEFAULT_UPDATE_NS_PER_BYTE * (double)live_bytes +
         DEFAULT_MOVE_NS_PER_BYTE * (double)move_bytes;
}

int mc_policy_choose_slide_for_pause(const mc_slide_model *p, size_t live_bytes,
                                     size_t move_bytes, size_t pinned_pages, uint64_t *est_ns) {
  uint64_t est = (uint64_t)(pause_base_ns(live_bytes, move_bytes) * p->pause_slide_scale);
  if (est_ns) *est_ns = est;
  if (p->force >= 0) return p->force;
  return (double)est < p->pause_flip_ns + p->pinned_page_ns * (double)pinned_pages;
}

/* Fewer pages than this say little (a few cache misses dominate). */
#define LEARN_MIN_PAGES 64

void mc_policy_pinned_built(mc_slide_model *p, size_t pages, uint64_t ns) {
  if (pages < LEARN_MIN_PAGES || !ns) return;
  p->pinned_page_ns = p->pinned_page_ns * 0.75 + (double)ns / (double)pages * 0.25;
}

/* Below this a cycle's timing is mostly clock and cache noise. */
#define LEARN_MIN_BYTES ((size_t)64 << 10)

static double blend(double old, double now) { return old * 0.75 + now * 0.25; }

/* Below this a pause's figure is mostly clock and cache noise. */
#define LEARN_MIN_PAUSE_NS 50000

void mc_policy_learn_pause(mc_slide_model *p, int slid, size_t live_bytes, size_t move_bytes,
                           size_t pinned_pages, uint64_t pause_ns) {
  if (slid) {
    double base = pause_base_ns(live_bytes, move_bytes);
    if (base < LEARN_MIN_PAUSE_NS) return;
    double scale = blend(p->pause_slide_scale, (double)pause_ns / base);
    p->pause_slide_scale = scale < PAUSE_SCALE_MIN   ? PAUSE_SCALE_MIN
                           : scale > PAUSE_SCALE_MAX ? PAUSE_SCALE_MAX
                                                     : scale;
    return;
  }
  double rest = (double)pause_ns - p->pinned_page_ns * (double)pinned_pages;
  if (rest > 0) p->pause_flip_ns = blend(p->pause_flip_ns, rest);
}

void mc_policy_learn(mc_slide_model *p, size_t live_bytes, uint64_t update_ns, size_t move_bytes,
                     uint64_t slide_ns) {
  if (live_bytes >= LEARN_MIN_BYTES && update_ns)
    p->update_ns_per_byte = blend(p->update_ns_per_byte, (double)update_ns / (double)live_bytes);
  if (move_bytes >= LEARN_MIN_BYTES && slide_ns)
    p->move_ns_per_byte = blend(p->move_ns_per_byte, (double)slide_ns / (double)move_bytes);
}

void mc_policy_flipped(mc_slide_model *p) {
  p->update_ns_per_byte = blend(p->update_ns_per_byte, DEFAULT_UPDATE_NS_PER_BYTE);
  p->move_ns_per_byte = blend(p->move_ns_per_byte, DEFAULT_MOVE_NS_PER_BYTE);
}
