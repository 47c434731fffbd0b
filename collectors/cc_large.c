/* Large reference arrays fixed after the flip: see collectors/cc_large.h. */
#include "collectors/cc_large.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "collectors/mc.h"
#include "heap/heap.h"
#include "heap/sys.h"
#include "spaces/reserve.h"

/* Aside pages given back while the worker passes them, in steps of this. */
#define RELEASE_STEP ((size_t)512)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t npages_of(const cc_large_obj *o) { return (o->hi - o->lo) / FWD_PAGE; }

/* Forward the slots of [a, b) of o (addresses of the object, in place or
 * in a buffer at a - delta). */
static void forward_span(const mc_state *m, const cc_large_obj *o, uintptr_t a, uintptr_t b,
                         uintptr_t delta) {
  uintptr_t pend = o->start + FH_HEADER_BYTES + o->nslots * sizeof(void *);
  if (b > pend) b = pend;
  if (a < b) mc_forward_slots(&m->t, (void **)(a - delta), (b - a) / sizeof(void *));
}

int cc_large_defer(mc_state *m, void *obj, size_t nslots) {
  cc_large_set *s = &m->large;
  fh_heap *h = m->h;
  if (!s->defer || s->n == CC_LARGE_MAX || !los_contains(&h->los, obj)) return 0;
  if (!s->min_bytes) {
    const char *e = getenv("FH_CC_LARGE_MIN"); /* tests, measurements; 0: never */
    s->min_bytes = e && *e ? strtoull(e, NULL, 0) : CC_LARGE_MIN_DEFAULT;
    if (!s->min_bytes) s->min_bytes = SIZE_MAX;
  }
  uintptr_t start = obj_start(obj);
  size_t bytes = los_object_bytes(nslots * sizeof(void *));
  if (bytes < s->min_bytes || bytes < 2 * FWD_PAGE) return 0;
  /* Pinned: the kernel may be handed it (read(2) into it) and must find
   * its pages present.  Pins are gathered in every collection pause. */
  if (!h->pins.gathered || pin_set_has(&h->pins, start)) return 0;
  cc_large_obj *o = &s->obj[s->n];
  o->lo = start + FWD_PAGE;
  o->hi = start + bytes;
  o->state = calloc(npages_of(o), sizeof *o->state); /* PAGE_UNTOUCHED */
  if (!o->state) return 0;
  o->m = m;
  o->start = start;
  o->nslots = nslots;
  o->range_id = -1;
  o->res = o->aside = 0;
  s->n++;
  forward_span(m, o, (uintptr_t)obj, o->lo, 0); /* the header's page stays in place */
  return 1;
}

/* The rest of o in the pause, where it lies. */
static void update_now(mc_state *m, cc_large_obj *o) {
  uintptr_t pend = o->start + FH_HEADER_BYTES + o->nslots * sizeof(void *);
  if (pend > o->lo) mc_update_array(m, (void **)o->lo, (pend - o->lo) / sizeof(void *));
  free((void *)o->state);
  o->state = NULL;
}

/* Move o's pages aside and register the emptied range.  0, or -1 with the
 * object's pages in place (moved or copied back). */
static int put_aside(cc_large_obj *o) {
  size_t len = o->hi - o->lo;
  o->res_len = len + 2 * FH_PMD;
  void *r = sys_mmap(NULL, o->res_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
  if (r == MAP_FAILED) return -1;
  o->res = (uintptr_t)r;
  /* Congruent modulo 2 MiB: the whole PMDs of the range move as entries. */
  o->aside = align_up(o->res, FH_PMD) + (o->lo & (FH_PMD - 1));
  if (fh_uffd_mremap_dontunmap((void *)o->lo, len, (void *)o->aside) < 0) {
    sys_munmap(r, o->res_len);
    return -1;
  }
  return 0;
}

static void wait_mapped(const _Atomic uint32_t *st) {
  for (unsigned i = 0; atomic_load_explicit(st, memory_order_acquire) != PAGE_MAPPED; i++) {
    if (i < 8) {
      sched_yield();
    } else {
      struct timespec ts = {0, 10000L * (i < 40 ? i - 7 : 32)};
      nanosleep(&ts, NULL);
    }
  }
}

static int claim(_Atomic uint32_t *st) {
  uint32_t expect = PAGE_UNTOUCHED;
  return atomic_compare_exchange_strong_explicit(st, &expect, PAGE_BUILDING,
                                                 memory_order_acquire, memory_order_relaxed);
}

/* Build pages [p, p + n) of o (claimed) into buf and install them. */
static void build_run(cc_large_obj *o, int fd, size_t p, size_t n, uint8_t *buf) {
  mc_state *m = o->m;
  uintptr_t a = o->lo + p * FWD_PAGE, len = n * FWD_PAGE;
  memcpy(buf, (const void *)(o->aside + p * FWD_PAGE), len);
  forward_span(m, o, a, a + len, a - (uintptr_t)buf);
  mc_install(m, fd, (uint8_t *)a, buf, len);
  for (size_t i = 0; i < n; i++)
    atomic_store_explicit(&o->state[p + i], PAGE_MAPPED, memory_order_release);
}

/* A mutator's fault (its SIGBUS handler, or the handler thread): no lock,
 * no malloc, no missing page touched. */
static int resolve(void *arg, const fh_uffd_fault *f) {
  cc_large_obj *o = arg;
  size_t p = (f->page - o->lo) / FWD_PAGE;
  if (f->page < o->lo || p >= npages_of(o)) return FH_UFFD_RESOLVE_FAILED; /* not ours */
  if (!claim(&o->state[p])) {
    wait_mapped(&o->state[p]); /* someone else builds it */
    return FH_UFFD_RESOLVED_EXISTED;
  }
  uint8_t *buf = fh_uffd_thread_buf();
  if (!buf) { /* give the claim back: the fault is retried, or fatal (SIGBUS) */
    atomic_store_explicit(&o->state[p], PAGE_UNTOUCHED, memory_order_release);
    return FH_UFFD_RESOLVE_FAILED;
  }
  build_run(o, f->fd, p, 1, buf);
  return FH_UFFD_RESOLVED;
}

/* Put o's pages back where they were (the registration failed). */
static void put_back(cc_large_obj *o) {
  size_t len = o->hi - o->lo;
  if (sys_mremap((void *)o->aside, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)o->lo) ==
      MAP_FAILED)
    memcpy((void *)o->lo, (const void *)o->aside, len); /* fresh pages there: no uffd */
  sys_munmap((void *)o->res, o->res_len);
  o->res = o->aside = 0;
}

void cc_large_flip(mc_state *m) {
  cc_large_set *s = &m->large;
  uint64_t t0 = now_ns();
  s->at_flip_begin = t0;
  size_t kept = 0, pages = 0, fallbacks = 0;
  for (size_t i = 0; i < s->n; i++) {
    cc_large_obj *o = &s->obj[i];
    int ok = put_aside(o) == 0;
    if (ok) {
      o->range_id = fh_uffd_range_add(m->uffd, (void *)o->lo, o->hi - o->lo, FH_UFFD_REG_MISSING,
                                      resolve, o, NULL);
      if (o->range_id < 0) put_back(o), ok = 0;
    }
    if (!ok) {
      update_now(m, o);
      fallbacks++;
      continue;
    }
    pages += npages_of(o);
    if (kept != i) s->obj[kept] = *o;
    kept++;
  }
  s->n = kept;
  s->last_objects = kept;
  s->last_pages = pages;
  s->last_fallbacks = fallbacks;
  s->total_objects += kept;
  s->total_fallbacks += fallbacks;
  s->at_flip_end = now_ns();
  s->last_flip_ns = s->at_flip_end - t0;
}

void cc_large_fallback(mc_state *m) {
  cc_large_set *s = &m->large;
  for (size_t i = 0; i < s->n; i++) update_now(m, &s->obj[i]);
  s->total_fallbacks += s->n;
  s->last_fallbacks = s->n;
  s->last_objects = s->last_pages = 0;
  s->n = 0;
}

void cc_large_work(mc_state *m, uint8_t *buf) {
  cc_large_set *s = &m->large;
  if (!s->n) return;
  uint64_t t0 = now_ns();
  int fd = fh_uffd_fd(m->uffd);
  for (size_t i = 0; i < s->n; i++) {
    cc_large_obj *o = &s->obj[i];
    size_t np = npages_of(o), low = 0, mapped = 0;
    for (size_t p = 0; p < np;) {
      size_t n = 0;
      while (n < MC_MAX_RUN && p + n < np && claim(&o->state[p + n])) n++;
      if (n) build_run(o, fd, p, n, buf);
      p += n ? n : 1; /* unclaimed: a mutator builds it */
      /* Aside pages below the lowest unmapped one are read by nobody:
       * back in 2 MiB steps (failing costs memory only, until the unmap). */
      while (mapped < p &&
             atomic_load_explicit(&o->state[mapped], memory_order_acquire) == PAGE_MAPPED)
        mapped++;
      if (mapped - low >= RELEASE_STEP) {
        sys_madvise((void *)(o->aside + low * FWD_PAGE), (mapped - low) * FWD_PAGE,
                    MADV_DONTNEED);
        low = mapped;
      }
    }
    for (size_t p = 0; p < np; p++) wait_mapped(&o->state[p]);
    /* Every page is present.  An unregistration that failed leaves the
     * range registered: the phase's end then reopens the uffd (end_range),
     * which drops it. */
    if (fh_uffd_range_retire(m->uffd, o->range_id) != 0) {
      int zero = 0;
      atomic_compare_exchange_strong(&m->uffd_errno, &zero, errno ? errno : EIO);
    }
    o->range_id = -1;
    sys_munmap((void *)o->res, o->res_len); /* failing: the reservation leaks */
    free((void *)o->state);
    o->state = NULL;
  }
  s->n = 0;
  s->last_work_ns = now_ns() - t0;
  if (getenv("FH_MC_TRACE"))
    fprintf(stderr, "faultheap mc large: %zu objects, %zu pages aside in the pause (%.3f ms, "
                    "%zu updated in it instead); built after it in %.2f ms\n",
            s->last_objects, s->last_pages, s->last_flip_ns / 1e6, s->last_fallbacks,
            s->last_work_ns / 1e6);
}
