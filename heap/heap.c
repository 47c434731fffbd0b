/* Heap creation and destruction: the address-space layout, the space table,
 * the collection trigger. */
#include "heap/heap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectors/collector.h"
#include "collectors/concurrent_mark.h"
#include "heap/barrier.h"
#include "heap/ephemeron.h"
#include "heap/error.h"
#include "heap/image_load.h"
#include "heap/options.h"
#include "heap/sys.h"
#include "heap/zygote.h"
#include "spaces/reserve.h"
#include "uffd/uffd.h"

/* Layout of the reservation, low to high, each region 2 MiB-aligned and
 * followed by a PROT_NONE guard so neighbouring spaces never merge:
 *   [image space] | non-moving space | bump space A | bump space B |
 *   [large object space] | [main malloc space | backup malloc space]
 * The image space, when image_path is given, is the file's objects section
 * mapped MAP_PRIVATE at the image's preferred base when that is free (the
 * whole reservation is placed there), else wherever the reservation lands,
 * relocated (heap/image_load.c). */
#define GUARD FH_PMD

uint64_t heap_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static fh_collector resolve_collector(fh_heap *h, fh_collector c) {
  /* The default (DESIGN.md section 3): concurrent compaction where
   * userfaultfd and MREMAP_DONTUNMAP work in this process, else the same
   * algorithm stop-the-world.  The probe that tells (a dozen system calls,
   * ~55 us: a seventh of creating a heap) runs at the first collection
   * instead when nothing is known yet: until a collection, both collectors
   * have the same heap.  An explicit collector=concurrent_compact still
   * probes here, to say at once that it falls back. */
  if (c != FH_COLLECTOR_AUTO) return c;
  unsigned caps;
  if (!fh_uffd_caps_if_known(&caps)) {
    atomic_store_explicit(&h->collector_unsettled, 1, memory_order_relaxed);
    return FH_CONCURRENT_COMPACT;
  }
  return (caps & FH_CAP_UFFD) && (caps & FH_CAP_DONTUNMAP) ? FH_CONCURRENT_COMPACT
                                                           : FH_MARK_COMPACT;
}

void heap_settle_collector(fh_heap *h) {
  if (!atomic_load_explicit(&h->collector_unsettled, memory_order_acquire)) return;
  unsigned caps = fh_capabilities(); /* probes, outside any lock */
  int ok = (caps & FH_CAP_UFFD) && (caps & FH_CAP_DONTUNMAP);
  /* Under stats_lock: fh_get_stats and the pause accounting read the
   * collector there; the release pairs with the acquire above, after
   * which every reader sees the settled collector. */
  pthread_mutex_lock(&h->stats_lock);
  if (atomic_load_explicit(&h->collector_unsettled, memory_order_relaxed)) {
    if (!ok) {
      h->opt.collector = FH_MARK_COMPACT;
      h->collector = &mark_compact_collector;
      if (h->opt.background_collector == FH_CONCURRENT_COMPACT)
        h->opt.background_collector = FH_MARK_COMPACT;
    }
    atomic_store_explicit(&h->collector_unsettled, 0, memory_order_release);
  }
  pthread_mutex_unlock(&h->stats_lock);
}

static int load_options(fh_options *o, const fh_options *given) {
  if (given) {
    *o = *given;
    return options_validate(o);
  }
  fh_options_init(o);
  const char *env = getenv("FH_OPTIONS");
  if (env && fh_options_parse(o, env) < 0) {
    fh_error_prefix("FH_OPTIONS");
    return -1;
  }
  return 0;
}

static int map_spaces_image(fh_heap *h, image_load *img);

static int map_spaces(fh_heap *h) {
  if (!h->opt.image_path) return map_spaces_image(h, NULL);
  image_load img;
  const char *tr = h->opt.image_trust;
  int trust = !tr ? IMAGE_TRUST_NONE
              : strcmp(tr, "unchanged") == 0 ? IMAGE_TRUST_UNCHANGED
              : strcmp(tr, "same_build") == 0 ? IMAGE_TRUST_SAME_BUILD : IMAGE_TRUST_NONE;
  if (image_load_open(&img, h->opt.image_path, trust) < 0) return -1;
  int rc = map_spaces_image(h, &img);
  image_load_close(&img);
  return rc;
}

/* img: a validated image to install at the reservation's start, or NULL. */
static int map_spaces_image(fh_heap *h, image_load *img) {
  /* The jemalloc-backed spaces get the range their arena needs to hold
   * their limit (spaces/arena.h: jemalloc's metadata and size classes live
   * in the range too); their limits stay non_moving_max and heap_max. */
  size_t bump = align_up(heap_reserved_max(h), FH_PMD);
  /* The non-moving range also holds the zygote space fh_prefork makes at
   * its start, from what was live: room for heap_max more (address space
   * only; pages are touched as the copy fills them), so that fh_prefork
   * succeeds whenever the live data fits under heap_max, whatever
   * non_moving_max is. */
  size_t nm = arena_range_bytes(heap_non_moving_limit(h)) + bump;
  /* collector=mark_sweep adds the main and backup malloc spaces after the
   * bump spaces, each with its own guard. */
  size_t ms = h->opt.collector == FH_MARK_SWEEP ? arena_range_bytes(heap_reserved_max(h)) : 0;
  /* The large-object space: heap_max bounds its bytes, and twice that of
   * address space lets page runs fragment without refusing an object
   * that heap_max would admit (address space only). */
  size_t los = h->opt.los_threshold ? 2 * bump : 0;
  h->resv_size = nm + GUARD + 2 * (bump + GUARD) + (los ? los + GUARD : 0) +
                 (ms ? 2 * (ms + GUARD) : 0);
  size_t image = img ? image_load_region_bytes(img) + GUARD : 0;
  h->resv_size += image;
  h->resv_begin = img ? reserve_range(h->resv_size, FH_PMD, image_load_preferred_base(img)) : 0;
  if (!h->resv_begin) h->resv_begin = reserve_range(h->resv_size, FH_PMD, 0);
  if (!h->resv_begin) {
    fh_error_set("cannot reserve %zu MiB of address space for the heap", h->resv_size >> 20);
    return -1;
  }
  uintptr_t p = h->resv_begin + image;
  uintptr_t nm_begin = p;
  p += nm + GUARD;
  uintptr_t bump_begin[2];
  for (int i = 0; i < 2; i++) {
    bump_begin[i] = p;
    p += bump + GUARD;
  }
  if (reserve_open(nm_begin, nm) < 0 || reserve_open(bump_begin[0], bump) < 0 ||
      reserve_open(bump_begin[1], bump) < 0) {
    fh_error_set("cannot map the heap's spaces");
    return -1;
  }
  if (non_moving_space_init(&h->non_moving, "non-moving space", nm_begin, nm,
                            heap_non_moving_limit(h)) < 0) return -1;
  bump_space_init(&h->bump[0], "bump space A", bump_begin[0], bump);
  bump_space_init(&h->bump[1], "bump space B", bump_begin[1], bump);
  if (h->opt.stack_roots == FH_STACK_ROOTS_CONSERVATIVE &&
      (bump_space_track_starts(&h->bump[0]) < 0 || bump_space_track_starts(&h->bump[1]) < 0)) {
    fh_error_set("stack_roots=conservative: cannot map the bump spaces' object-start bitmaps");
    return -1;
  }
  if (los) {
    if (reserve_open(p, los) < 0) {
      fh_error_set("cannot map the large object space");
      return -1;
    }
    if (los_init(&h->los, p, los) < 0) return -1;
    p += los + GUARD;
  }
  if (ms) {
    uintptr_t ms_main = p, ms_backup = p + ms + GUARD;
    if (reserve_open(ms_main, ms) < 0 || reserve_open(ms_backup, ms) < 0) {
      fh_error_set("cannot map the malloc spaces");
      return -1;
    }
    if (malloc_heap_init(h, ms_main, ms_backup, ms) < 0) return -1;
  }
  if (native_init(h) < 0) return -1;
  if (cards_init(h) < 0) return -1;
  if (!img) return 0;
  if (image_load_install(h, img, h->resv_begin) < 0) return -1;
  return idhash_record_image(h, &img->parsed); /* keys its hashed objects hold */
}

fh_heap *fh_heap_create(const fh_options *given) {
  fh_heap *h = calloc(1, sizeof *h);
  if (!h) {
    fh_error_set("fh_heap_create: out of memory");
    return NULL;
  }
  if (load_options(&h->opt, given) < 0) goto fail_early;
  if (h->opt.image_share && strcmp(h->opt.image_share, "none") != 0 &&
      strcmp(h->opt.image_share, "memfd") != 0) {
    fh_error_set("fh_heap_create: image_share=%s: expected none or memfd", h->opt.image_share);
    goto fail_early;
  }
  if (h->opt.image_trust && strcmp(h->opt.image_trust, "none") != 0 &&
      strcmp(h->opt.image_trust, "same_build") != 0 &&
      strcmp(h->opt.image_trust, "unchanged") != 0) {
    fh_error_set("fh_heap_create: image_trust=%s: expected none, same_build or unchanged",
                 h->opt.image_trust);
    goto fail_early;
  }
  h->opt.collector = resolve_collector(h, h->opt.collector);
  h->reserved_max = h->opt.heap_reserve > h->opt.heap_max ? h->opt.heap_reserve : h->opt.heap_max;
  sizer_init(&h->sizer);
  if (h->opt.background_collector == FH_COLLECTOR_AUTO)
    h->opt.background_collector =
        h->opt.collector == FH_MARK_SWEEP ? FH_HSPACE_COMPACT : h->opt.collector;
  if (h->opt.background_collector == FH_HSPACE_COMPACT && h->opt.collector != FH_MARK_SWEEP) {
    fh_error_set("fh_heap_create: background_collector=hspace_compact needs collector=mark_sweep "
                 "(homogeneous compaction works on the malloc spaces only that collector has)");
    goto fail_early;
  }
  if (atomic_load_explicit(&h->collector_unsettled, memory_order_relaxed))
    h->collector = &concurrent_compact_collector; /* collector_for would probe */
  else if (!(h->collector = collector_for(h->opt.collector)))
    goto fail_early;
  if (h->opt.background_collector != h->opt.collector &&
      !collector_for(h->opt.background_collector)) {
    fh_error_prefix("background_collector");
    goto fail_early;
  }
  h->tags = (slot_tags){h->opt.tag_immediate_mask, h->opt.tag_pointer_mask};
  if (types_init(&h->types) < 0) goto fail_early;
  weak_records_init(&h->finalizers);
  weak_records_init(&h->fin_queue);
  weak_records_init(&h->hash_vacated);
  idhash_init(&h->idhash);
  pthread_mutex_init(&h->fin_notify_lock, NULL);
  pthread_mutex_init(&h->gc_lock, NULL);
  pthread_mutex_init(&h->world_lock, NULL);
  pthread_mutex_init(&h->roots_lock, NULL);
  pthread_mutex_init(&h->stats_lock, NULL);
  pthread_cond_init(&h->parked_cv, NULL);
  pthread_cond_init(&h->resume_cv, NULL);
  pthread_cond_init(&h->critical_cv, NULL);
  pthread_cond_init(&h->phase_cv, NULL);
  pthread_mutex_init(&h->hspace_bg_lock, NULL);
  gc_pool_init(&h->pool);
  long cpus = heap_usable_cpus();
  gc_pace_init(&h->pace, cpus > 0 ? (unsigned)cpus : 1);
  h->gc_tcache = -1;
  h->gen.tcache = -2;
  CDS_INIT_LIST_HEAD(&h->threads);
  /* Before map_spaces, whose malloc spaces may be the process's first
   * jemalloc call. */
  if (fork_install_handlers() < 0 || map_spaces(h) < 0) {
    fh_error_prefix("fh_heap_create");
    fh_heap_destroy(h);
    return NULL;
  }
  heap_set_trigger(h, 0);
  ephemeron_adopt_image_type(h);
  if (fork_register_heap(h) < 0) {
    fh_error_prefix("fh_heap_create");
    fh_heap_destroy(h);
    return NULL;
  }
  return h;

fail_early:
  free(h);
  return NULL;
}

void fh_heap_destroy(fh_heap *h) {
  if (!h) return;
  hspace_background_join(h); /* its thread is attached while it runs */
  if (h->nthreads) {
    /* Destroying under attached threads would free memory they use; refuse
     * and say so rather than crash later. */
    fh_error_set("fh_heap_destroy: %u threads are still attached; detach them first",
                 h->nthreads);
    return;
  }
  fork_unregister_heap(h); /* before anything goes: the fork handlers walk it */
  /* A concurrent marking still running (no mutator is left to be stopped)
   * ends here, and its marker task is joined. */
  pthread_mutex_lock(&h->gc_lock);
  cmark_abandon(h);
  pthread_mutex_unlock(&h->gc_lock);
  fh_gc_wait(h);
  mc_heap_destroy(h); /* joins the compaction worker, closes the uffd */
  gc_pool_destroy(&h->pool); /* waits for detached tasks' last steps too */
  if (h->gen.tcache >= 0) arena_tcache_destroy(h->gen.tcache);
  if (h->non_moving.space.ops) non_moving_space_destroy(&h->non_moving);
  los_destroy(&h->los);
  zygote_space_destroy(&h->zygote); /* its frozen arenas, before the range goes */
  malloc_heap_destroy(h);
  native_destroy(h);
  cards_destroy(h);
  for (int i = 0; i < 2; i++) bump_space_destroy(&h->bump[i]);
  pins_destroy(h);
  free(h->semi_islands.runs); /* collectors/semi_fixed.c */
  reserve_release(h->resv_begin, h->resv_size);
  image_space_destroy(&h->image);
  types_destroy(&h->types);
  threads_free_tombstones(h);
  weak_records_destroy(&h->finalizers);
  weak_records_destroy(&h->fin_queue);
  weak_records_destroy(&h->hash_vacated);
  idhash_destroy(&h->idhash);
  pthread_mutex_destroy(&h->fin_notify_lock);
  free(h->global_roots);
  pthread_mutex_destroy(&h->gc_lock);
  pthread_mutex_destroy(&h->world_lock);
  pthread_mutex_destroy(&h->roots_lock);
  pthread_mutex_destroy(&h->stats_lock);
  pthread_cond_destroy(&h->parked_cv);
  pthread_cond_destroy(&h->resume_cv);
  pthread_cond_destroy(&h->critical_cv);
  pthread_cond_destroy(&h->phase_cv);
  gc_pace_destroy(&h->pace);
  pthread_mutex_destroy(&h->hspace_bg_lock);
  free(h);
}

uint32_t fh_register_type(fh_heap *h, const fh_type *t) {
  if (!h) {
    fh_error_set("fh_register_type: heap is NULL");
    return 0;
  }
  if (t && (t->flags & TYPE_INTERNAL_FLAGS)) {
    fh_error_set("fh_register_type(%s): unknown flags 0x%x", t->name ? t->name : "?",
                 t->flags & TYPE_INTERNAL_FLAGS);
    return 0;
  }
  return types_register(&h->types, t);
}

unsigned heap_spaces(fh_heap *h, fh_space **out) {
  unsigned n = 0;
  out[n++] = &h->bump[h->active].space;
  out[n++] = &h->bump[!h->active].space;
  out[n++] = &h->non_moving.space;
  if (h->los.space.ops) out[n++] = &h->los.space;
  if (h->has_malloc_spaces) {
    out[n++] = &heap_main_malloc(h)->space;
    out[n++] = &heap_backup_malloc(h)->space;
  }
  if (image_space_present(&h->image)) out[n++] = &h->image.space;
  if (zygote_space_present(&h->zygote)) out[n++] = &h->zygote.space;
  return n;
}

size_t heap_used_bytes(fh_heap *h) {
  return bump_space_used(&h->bump[h->active]) + h->semi_idle_bytes + heap_nonmoving_used(h) +
         (h->has_malloc_spaces ? atomic_load(&heap_main_malloc(h)->used) : 0);
}

void heap_set_trigger(fh_heap *h, size_t live) { heap_set_trigger_moving(h, live, SIZE_MAX, 0); }

void heap_set_trigger_moving(fh_heap *h, size_t live, size_t occupied, int thp) {
  h->live_after_gc = live;
  /* fixed: the heap grows to growth_factor_pct of all live data, large
   * objects included, as ART and Whippet size theirs.  adaptive: MemBalancer's
   * sqrt(L x g / s) takes L as the bytes a collection traces and moves,
   * since its speed s is measured per such byte: a large object is marked
   * as one object and never copied or slid, so counting a live 50 MB array
   * there would buy ~sqrt(50 MB) of allocation its collections never pay
   * for; its bound (fixed's budget) counts them (heap/sizer.c).  (Leaving large objects out of fixed too halved the budget of
   * Whippet's mt-gcbench shape, whose 4 MB array is half its live data:
   * 68 -> 127 collections, 1.4x -> 1.9-3.4x Whippet's time.)  Either way
   * they take room under heap_max (below). */
  size_t grow;
  if (h->opt.heap_policy == FH_HEAP_ADAPTIVE) {
    size_t los = atomic_load_explicit(&h->los.used, memory_order_relaxed);
    grow = sizer_extra(h, live > los ? live - los : 0, live);
  } else {
    grow = (size_t)((double)live * (h->opt.growth_factor_pct - 100) / 100.0);
    if (grow < h->opt.min_alloc_trigger) grow = h->opt.min_alloc_trigger;
  }
  /* Past the capacity an allocation fails and collects anyway (semispace:
   * what its copy would need counts too). */
  size_t lim = heap_limit(h), room = lim > live ? lim - live : 0;
  if (heap_two_halves(h)) {
    /* What the bump space may still fill: non-moving (promoted, or
     * fh_alloc_nonmoving) bytes need no copy reserve, so lim / 2 - live
     * would leave no room once they pass half the heap, and a heap whose
     * non-moving objects fill it would collect at every allocation
     * (semispace, heap_max=1M filled by fh_alloc_nonmoving: 10,924
     * collections for 21,845 objects). */
    size_t nm = heap_nonmoving_used(h), young = live > nm ? live - nm : 0;
    size_t half = heap_bump_room(h, nm);
    room = half > young ? half - young : 0;
  } else if (occupied != SIZE_MAX) {
    /* The tables and the huge-page rounding take at most half the room: a
     * heap whose live data nearly fills heap_max would otherwise collect
     * at every TLAB once its tables did not fit. */
    size_t r = sizer_moving_room(h, occupied, heap_nonmoving_used(h), thp);
    if (r < room / 2) r = room / 2;
    if (r < room) room = r;
  }
  /* A malloc space cannot fill its last bytes: runs keep holes too small
   * for the next object (heap/malloc_heap.c).  Triggering 1/16 short of
   * the limit keeps the collections of a program that runs the heap full
   * triggered ones, the same in every run, instead of allocation failures
   * whose number depends on how the sweep's runs were shared out
   * (mt-gcbench at 2x: 79 triggered collections in every run; without
   * this, 72-75 + 0-3 failures). */
  if (h->has_malloc_spaces) room -= room / 16;
  h->gc_trigger = grow < room ? grow : room;
}

void heap_phase_open(fh_heap *h) {
  pthread_mutex_lock(&h->world_lock);
  h->concurrent_phase = 1;
  pthread_mutex_unlock(&h->world_lock);
}

void heap_phase_close(fh_heap *h) {
  pthread_mutex_lock(&h->world_lock);
  h->concurrent_phase = 0;
  pthread_cond_broadcast(&h->phase_cv);
  pthread_mutex_unlock(&h->world_lock);
}

int heap_phase_thread(fh_heap *h, const char *name, void *(*fn)(void *), void *arg) {
  heap_phase_open(h);
  if (gc_pool_start(&h->pool, NULL, name, fn, arg) != 0) {
    heap_phase_close(h);
    return -1;
  }
  return 0;
}

void fh_gc_wait(fh_heap *h) {
  if (!h) return;
  pthread_mutex_lock(&h->world_lock);
  if (h->concurrent_phase) {
    /* The phase's paced work (a sweeper) runs unpaced while anyone waits
     * for it.  Not world_lock's holder that wakes it: gc_pace's own lock,
     * taken inside world_lock here only. */
    gc_pace_hurry_begin(h);
    while (h->concurrent_phase) pthread_cond_wait(&h->phase_cv, &h->world_lock);
    gc_pace_hurry_end(h);
  }
  pthread_mutex_unlock(&h->world_lock);
}

void fh_set_background(fh_heap *h, int background) {
  if (!h) {
    fh_error_set("fh_set_background: heap is NULL");
    return;
  }
  /* Recorded for fh_dump and for the background policies (homogeneous
   * compaction on entering the background) that key off it. */
  int was = atomic_exchange(&h->background, background != 0);
  if (background && !was) hspace_background_request(h);
}
