/* Pinned pages of a concurrent compaction, built in the flip pause
 * (issue 18): split from concurrent_compact.c, whose page claiming,
 * building and dense installing it uses (mc.h). */
#include "collectors/mc.h"

/* Pinned objects' pages are built and mapped inside the pause, before
 * mutators resume (forwarding.h): a pinned object may be handed to the
 * kernel (read(2) into it), whose access to a missing page of a
 * registered range fails with EFAULT in SIGBUS mode, and in thread mode
 * waits on the handler thread.  Mapped now, nothing ever unmaps them:
 * they are never missing.  Only the pages the pinned objects cover: the
 * rest of a range (live objects that straddled it) stays in place too but
 * is built concurrently (a pinned array of a dense heap put 550 there). */
typedef struct pinned_run {
  size_t p, n;  /* claimed pages [p, p + n), not built yet */
  size_t built; /* pages built so far */
} pinned_run;

static void flush_pinned(mc_state *m, pinned_run *r) {
  if (r->n) mc_build_and_copy(m, fh_uffd_fd(m->uffd), r->p, r->n, m->worker_buf);
  r->built += r->n;
  r->n = 0;
}

/* Pages [p, e) join the run, which is built and installed by one COPY
 * when it reaches MC_MAX_RUN pages or the next page does not follow it:
 * with 1% of small objects pinned nearly every page holds one (fhbench
 * pins: 3,000 pins on ~4,200 pages), and neighbours share a system call
 * (the kernel's work per page stays: ~2.3 us a page in all). */
static void build_pinned_pages(mc_state *m, pinned_run *r, size_t p, size_t e) {
  for (; p < e; p++) {
    if (r->n && (r->p + r->n != p || r->n == MC_MAX_RUN)) flush_pinned(m, r);
    if (!mc_claim_page(m, p)) continue; /* built already, or in the run */
    if (!r->n) r->p = p;
    r->n++;
  }
}

/* The pages wholly inside a pinned object, past its header's page, hold
 * nothing but that object, at its address: their from-space copies are the
 * destination pages once their references are fixed in place, and go back
 * by UFFDIO_MOVE (page tables, no copy) as one run, as the dense prefix's
 * do.  GCBench's 4 MiB array, pinned by a stack word, cost 3 ms of every
 * pause built page by page. */
static void install_pinned_interior(mc_state *m, size_t p, size_t e) {
  int fd = fh_uffd_fd(m->uffd);
  int move = m->use_move && fh_uffd_has_move(m->uffd) &&
             !atomic_load_explicit(&m->uffd_broken, memory_order_relaxed);
  while (p < e) {
    size_t n = 0;
    while (p + n < e && mc_claim_page(m, p + n)) n++;
    if (n) mc_fix_and_install_dense(m, fd, p, n, move);
    p += n ? n : 1; /* unclaimed: built already */
  }
}

/* Returns how many pages it built (for the policy's cost of them). */
size_t mc_build_pinned_ranges(mc_state *m) {
  const fwd_tables *t = &m->t;
  const pin_set *pins = &m->h->pins;
  pinned_run run = {0, 0, 0};
  for (size_t i = pin_set_lower_bound(pins, t->begin); i < pins->n; i++) {
    uintptr_t start = pins->starts[i];
    if (start >= t->old_top) break;
    /* Pinned objects keep their address: old pages are new pages. */
    uintptr_t end = start + obj_bytes(*(const uint64_t *)(start + m->src.from_delta));
    size_t first = (start - t->begin) / FWD_PAGE, full_end = (end - t->begin) / FWD_PAGE;
    size_t last = (end - t->begin + FWD_PAGE - 1) / FWD_PAGE;
    if (last > t->npages) last = t->npages;
    if (full_end > last) full_end = last;
    if (full_end > first + 1) {
      build_pinned_pages(m, &run, first, first + 1); /* the header's page */
      flush_pinned(m, &run);
      install_pinned_interior(m, first + 1, full_end);
      build_pinned_pages(m, &run, full_end, last);
    } else {
      build_pinned_pages(m, &run, first, last);
    }
  }
  flush_pinned(m, &run);
  return run.built;
}
