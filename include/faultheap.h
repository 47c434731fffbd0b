/* faultheap: an embeddable compacting garbage-collected heap for language
 * runtimes.  This is the only header an embedder includes.
 *
 * Every declaration below carries its contract in its comment; the README
 * and docs/embedding.md (the embedder's guide) explain how to use them.  The
 * hot operations (allocation, the write barrier, the safepoint poll, root
 * push/pop) have their fast halves inline here, over a small public prefix of
 * fh_thread; everything else is out of line in libfaultheap. */
#ifndef FAULTHEAP_H_
#define FAULTHEAP_H_

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FH_API __attribute__((visibility("default")))
#define FH__LIKELY(x) __builtin_expect(!!(x), 1)
#define FH__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FH_API
#define FH__LIKELY(x) (x)
#define FH__UNLIKELY(x) (x)
#endif

/* ---- errors ------------------------------------------------------------ */
/* Thread-local text of the last failure on this thread, "" if none.
 *
 * Bad input (README "Failure guarantees: bad input").  A heap handle is
 * checked for NULL only; a thread handle for NULL and, in every slow path,
 * for having been detached (below).  A made-up handle cannot be told apart
 * cheaply.  Object arguments are checked against the used
 * part of the heap's spaces and the header found there (a few compares);
 * a stale pointer that still lands on an object-like header inside a space
 * is caught only by verify=1.  Slots (roots, fh_write_ref's slot without
 * verify=1) are the caller's memory: NULL is refused, nothing more. */
FH_API const char *fh_last_error(void);
/* fh_last_error() works as errno does: a failing call sets it, a call that
 * succeeds leaves it alone (the inline fast paths cannot afford a store).
 * To learn whether a call that returns nothing failed (fh_write_ref,
 * fh_push_root, fh_pop_roots, fh_critical_end, fh_thread_detach, the
 * blocking calls, fh_root_add/remove, fh_free, fh_ephemeron_set_value),
 * clear the text first and test it after: fh_clear_error(); call;
 * if (*fh_last_error()) ...  Calls with a result say it by that result.
 *
 * Misuse that is reported (README "Failure guarantees: misuse"): a thread
 * that exits without fh_thread_detach is detached at its exit, with a line
 * on stderr; a detached handle passed again to any call (until a later
 * fh_thread_attach of the same heap reuses its memory); fh_alloc inside
 * fh_enter_blocking (NULL); with verify=1, a handle used from an OS thread
 * other than the one that attached it (in the calls that take a slow path
 * under verify=1: allocation, fh_write_ref, the ephemeron accessors,
 * fh_collect, the blocking and critical-section calls) and fh_write_ref
 * with a slot outside its object. */
FH_API void fh_clear_error(void);

/* ---- options ----------------------------------------------------------- */
typedef enum {
  FH_SEMISPACE,
  FH_MARK_SWEEP,
  FH_MARK_COMPACT,
  FH_CONCURRENT_COMPACT,
  FH_HSPACE_COMPACT, /* only as background_collector */
  FH_COLLECTOR_AUTO, /* the default: chosen at fh_heap_create (see README) */
  /* Generational semi-space (ART's GSS): young collections copy the
   * survivors of the active bump space to the other one and promote those
   * that already survived a collection into the non-moving space; whole-heap
   * collections also mark-sweep the non-moving space.  fh_write_ref's card
   * marks are its remembered set: a store that bypasses the barrier loses
   * objects (verify=1 catches it). */
  FH_GEN_SEMISPACE
} fh_collector;

/* How the heap sizes itself between collections (fh_options.heap_policy). */
typedef enum { FH_HEAP_FIXED = 0, FH_HEAP_ADAPTIVE = 1 } fh_heap_policy;
/* How thread stacks are treated at a collection (fh_options.stack_roots). */
typedef enum { FH_STACK_ROOTS_PRECISE = 0, FH_STACK_ROOTS_CONSERVATIVE = 1 } fh_stack_roots;

typedef struct fh_options {
  size_t heap_max;       /* the most memory the heap's objects and their
                            collector's reserve may occupy; default a
                            quarter of the memory the process may use (the
                            machine's, or its cgroup's limit if lower:
                            fh_options_init reads /proc/self/cgroup and
                            the cgroup's files, treating any it cannot
                            read as no limit), in whole MiB, at least 256
                            MiB, at most 1 TiB, and at most an eighth of
                            RLIMIT_AS (the heap reserves several times
                            heap_max of address space): a cap, not a size
                            (the heap grows with its live data,
                            growth_factor_pct/heap_policy); at least 1 MiB.  The same meaning with every
                            collector: semispace's two halves together stay
                            under it (so it holds at most half of it live);
                            homogeneous compaction alone may briefly need a
                            copy of the live data beside it (the old space
                            goes back at once).  A heap whose live data all died
                            can allocate any object that fits again
                            (collector=mark_sweep too: an allocation that
                            fails for fragmentation purges, then compacts or
                            resets the space).  fh_set_heap_max changes it
                            at run time, up to heap_reserve */
  size_t heap_reserve;   /* address space reserved for the objects: the
                            ceiling fh_set_heap_max may raise heap_max to;
                            default 0 (= heap_max; address space only, no
                            memory until used) */
  size_t non_moving_max; /* non-moving space capacity; default 64 MiB; at
                            least 1 MiB */
  fh_collector collector;            /* foreground collector */
  fh_collector background_collector; /* used after fh_set_background(h, 1) */
  int hspace_compact_on_oom;         /* collector=mark_sweep: an allocation that
                                        fails for fragmentation compacts the
                                        main malloc space; default 1 */
  unsigned gc_threads;               /* default: the CPUs this process may run on */
  const char *image_path;            /* image file mapped as the image space;
                                        a regular file (a FIFO, device or
                                        directory is refused, never opened
                                        blocking) */
  int verify;      /* verify the heap before and after each collection:
                      every object's header and references (a collection
                      leaves no dead object holding a stale reference);
                      check every fh_write_ref and the thread handle's
                      owner in the slow paths; fill memory a moving
                      collection vacated with 0xdeadbeefdeadbeef (README
                      "Stale pointers under verify=1") */
  int uffd_sigbus; /* concurrent compaction fault mode: 1 SIGBUS, 0 thread */
  /* Collection pacing and memory: */
  unsigned growth_factor_pct; /* collect when bytes allocated since the last
                                 collection exceed live * (pct - 100) / 100;
                                 default 200 (the heap may double); live
                                 includes large objects here, not under
                                 "adaptive"; both count in heap_max */
  size_t min_alloc_trigger;   /* ...but never before this many bytes;
                                 default 4 MiB */
  size_t tlab_size;           /* thread-local allocation buffer; 32 KiB */
  fh_heap_policy heap_policy; /* "fixed": the next collection comes after
                                 live * (growth_factor_pct - 100) / 100 bytes
                                 (at least min_alloc_trigger);
                                 "adaptive": after sqrt(live * expansiveness
                                 * rate), rate being the measured allocation
                                 rate over the collection speed (pause plus
                                 collector threads' CPU time; MemBalancer,
                                 Kirisame et al. 2022): less room for large
                                 heaps and slow allocation, more for small
                                 heaps and fast allocation; between
                                 min_alloc_trigger and fixed's budget,
                                 live * (growth_factor_pct - 100) / 100
                                 (large objects counted there), so never
                                 more than "fixed"; with generations, a full
                                 collection also comes once the old
                                 generation is most of the heap and has not
                                 been looked at for its own size in
                                 allocation, so that memory falls when old
                                 data dies.  Either way
                                 heap_max caps it, and memory above the next
                                 target is given back after each collection */
  size_t heap_expansiveness;  /* adaptive: the constant in bytes; default
                                 48 MiB (more: larger heap, fewer
                                 collections) */
  const char *image_share;    /* "none" (default) or "memfd": a relocated
                                 image is built in a sealed memfd so forked
                                 children share its pages */
  const char *image_trust;    /* "none" (default): every check of the file;
                                 "same_build": an image written by this very
                                 build of the program (its GNU build-id) whose
                                 CRC-32C matches skips the per-reference
                                 checks (boot ~2x faster on the loading
                                 part); for files you wrote and protect like
                                 the executable: the CRC catches damage, not
                                 a forged file; "unchanged": as same_build,
                                 and a file whose size and mtime are still
                                 those fh_image_save stamped in its header
                                 (nothing wrote to it since) is not read
                                 whole for its CRC (fhscheme's boot 0.33 ->
                                 0.25 ms); a file written since is CRC-checked */
  unsigned hspace_fragmentation_pct; /* collector=mark_sweep: fh_set_background(h, 1)
                                 compacts the main malloc space when the free
                                 bytes inside its resident pages exceed this
                                 percentage of its live bytes (and 1 MiB);
                                 default 25 */
  unsigned hspace_min_interval_ms; /* background homogeneous compactions run
                                 at most this often; never delays one that an
                                 allocation needs; default 1000 */
  /* Tagged values: what a reference slot may hold (object fields, root
   * slots, slots the root scanner visits).  Objects are 8-byte aligned, so
   * a reference's low 3 bits are free:
   *   tag_immediate_mask: a slot value with any of these bits set is not a
   *     reference (e.g. 0x1: odd words are fixnums); never read or changed;
   *   tag_pointer_mask: these bits of a reference are the embedder's tag:
   *     the collector finds the object at value & ~mask and keeps the tag
   *     when it updates the slot (e.g. 0x6: a 2-bit type tag on pointers).
   * Both default to 0 (every non-NULL slot value is an object pointer);
   * at most 0x7 each, disjoint.  Ephemeron keys and values, finalizer
   * objects, roots of fh_image_save and every API argument are plain
   * (untagged) object pointers.  A heap image records its masks and loads
   * only into a heap with the same ones. */
  uintptr_t tag_immediate_mask;
  uintptr_t tag_pointer_mask;
  int trace; /* 1: one line per collection on stderr (as Go's
                GODEBUG=gctrace=1): the fields of fh_gc_event */
  unsigned gc_stress; /* finding rooting bugs: N > 0 runs a collection at
                         every Nth allocation (fh_alloc, fh_alloc_nonmoving)
                         and at every Nth fh_safepoint poll, counted per
                         heap, and makes every such call take its slow path;
                         a mark_sweep heap then runs a homogeneous compaction,
                         which moves every object.  Not inside a critical
                         section.  Default 0: off, costing the fast paths
                         nothing */
  fh_stack_roots stack_roots; /* "precise" (default): only root slots,
                         the scanner and pins keep objects alive;
                         "conservative": every attached thread's stack and
                         saved registers are scanned too, and any word that
                         points into an object (its header, payload or
                         anywhere inside) keeps that object alive and pins
                         it for the collection (it does not move; such
                         words are never rewritten).  See "Conservative
                         stack roots" below */
  size_t los_threshold; /* objects whose payload is at least this many
                         bytes go to the large-object space: whole pages
                         of their own, never copied or slid by any
                         collector (pinning them is free), freed by every
                         collection's sweep with their pages returned to
                         the kernel, counted in heap_max.  Default 12 KiB
                         (as ART); 0: no large-object space; otherwise at
                         least 4 KiB */
  int generational;     /* collector=mark_compact and concurrent_compact:
                         young collections (generations as address ranges
                         of the moving space, the card table as remembered
                         set); every store of a reference into an object
                         must then go through fh_write_ref (see there).
                         1 (default): on, with either stack_roots (with
                         conservative ones the holes stack-pinned objects
                         leave are kept out of the old generation); 0:
                         every collection is a full one; 2: 1 with
                         precise roots, 0 with conservative ones (the old
                         generation keeps what died in it until a full
                         collection: with conservative roots small
                         programs' peak RSS was up to 2x, for about 2x
                         less time on allocation-heavy ones) */
  int concurrent_mark;  /* collector=mark_sweep and concurrent_compact:
                         triggered (full) collections mark concurrently
                         (a short pause takes the roots, a marker thread
                         traces while mutators run, a remark pause
                         finishes: the sweep, or the forwarding and the
                         flip); 1: on; default 0 (every marking stops the
                         world): objects allocated while marking live
                         until the next cycle, which cost GCBench 5-20%
                         time and a third more memory (mark_sweep), up
                         to 2.7x peak memory (concurrent_compact with
                         conservative roots) */
  unsigned gc_cpu_pct;  /* the share of one CPU, in percent, that the
                         concurrent marker (concurrent_mark=1) and
                         mark_sweep's background sweeper take while the
                         mutators have allocated less than half of what
                         the trigger allows until the next collection:
                         they work in bursts of 1 ms and sleep between
                         them, so that mutators sharing their CPUs keep
                         running.  Past half of that budget they speed up,
                         to 100% when it is spent, and they never make a
                         thread wait for them (fh_gc_wait, a collection, a
                         fork hurry them).  1..100; default 20; 100:
                         unpaced.  Concurrent compaction's page building
                         is never paced (mutators wait for its pages) */
} fh_options;

FH_API void fh_options_init(fh_options *o);
/* "heap_max=512M,collector=semispace,gc_threads=2": keys are the field names
 * above; sizes take k/M/G suffixes; booleans 0/1.  Returns 0, or -1 with
 * fh_last_error() naming the bad key or value (o is left unchanged then). */
FH_API int fh_options_parse(fh_options *o, const char *spec);

/* ---- heap -------------------------------------------------------------- */
typedef struct fh_heap fh_heap;
typedef struct fh_thread fh_thread;

/* NULL o: defaults plus the FH_OPTIONS environment variable.
 * Returns NULL with fh_last_error() on failure. */
FH_API fh_heap *fh_heap_create(const fh_options *o);
FH_API void fh_heap_destroy(fh_heap *h); /* every thread detached first */

/* Change heap_max at run time, within heap_reserve (at least 1 MiB).
 * Lowering it below what is in use is allowed: allocations then collect,
 * and fail until enough dies.  0, or -1 + fh_last_error(). */
FH_API int fh_set_heap_max(fh_heap *h, size_t bytes);
/* Running out: called on the allocating thread when an allocation is
 * about to fail for want of room under heap_max (after collecting), with
 * the bytes requested.  It may drop references (a cache), raise the cap
 * (fh_set_heap_max) or collect; return nonzero to have the allocation
 * collect and try again, 0 to let it fail.  At most 8 calls per
 * allocation.  It must not allocate from this heap (an allocation that
 * fails inside it does not call it again).  NULL removes it. */
typedef int (*fh_oom_handler)(fh_heap *h, fh_thread *t, size_t bytes, void *user);
FH_API void fh_set_oom_handler(fh_heap *h, fh_oom_handler fn, void *user);

/* ---- types ------------------------------------------------------------- */
typedef void (*fh_visit_fn)(void **slot, void *ctx);
typedef struct fh_type {
  const char *name;             /* unique; also keys types in image files */
  size_t size;                  /* payload bytes; 0 = variable */
  uint32_t nrefs;               /* reference slots at these byte offsets */
  const uint32_t *ref_offsets;
  /* Or NULL.  Calls visit on each reference slot and does nothing else: it
   * may run on a GC thread, concurrently with mutators, and inside a SIGBUS
   * handler during concurrent compaction, so it must not lock, allocate or
   * touch anything but the object (it may see a copy of it). */
  void (*trace)(void *obj, size_t size, fh_visit_fn visit, void *ctx);
  uint32_t flags;
} fh_type;
#define FH_TYPE_REF_ARRAY 1u /* the payload is void *[]; a trailing partial
                                word is not a reference */

/* Returns the type id (> 0), or 0 with fh_last_error(). */
FH_API uint32_t fh_register_type(fh_heap *h, const fh_type *t);

/* ---- mutator threads --------------------------------------------------- */
FH_API fh_thread *fh_thread_attach(fh_heap *h);
FH_API void fh_thread_detach(fh_thread *t);
static inline void fh_safepoint(fh_thread *t);
/* The calling thread t now runs on a stack of its own making (makecontext,
 * a coroutine, a larger stack than the OS gave it) whose highest address
 * (exclusive) is stack_base: with stack_roots=conservative the scan covers
 * from the thread's stack pointer up to there instead of up to the OS
 * thread's stack base, which no longer lies above it.  Called on t's own
 * thread, attached and outside a blocking region, after the switch and
 * before anything the old stack holds is needed as a root (the old stack is
 * no longer scanned).  No effect with precise stacks.  0, or -1 +
 * fh_last_error() (t or stack_base NULL, or stack_base below the caller's
 * own frame). */
FH_API int fh_thread_set_stack(fh_thread *t, void *stack_base);
/* fh_thread_attach for a thread already running on such a stack (or that
 * knows its stack's base): stack_base as for fh_thread_set_stack; NULL is
 * fh_thread_attach.  Saves the thread library's lookup of the stack, which
 * for the main thread reads /proc/self/maps (~0.1 ms). */
FH_API fh_thread *fh_thread_attach_stack(fh_heap *h, void *stack_base);
FH_API void fh_enter_blocking(fh_thread *t); /* won't touch the heap until leave */
FH_API void fh_leave_blocking(fh_thread *t);
/* The calling OS thread's attachment to h (what its fh_thread_attach(h)
 * returned and it has not detached), or NULL: not attached to h, or h
 * NULL (no error then: NULL is an answer).  Each OS thread has at most one
 * attachment per heap that this finds; a thread attached to several heaps
 * gets each one's own.  A few loads when asked about the same heap as last
 * time on this thread and nothing was attached or detached since, anywhere
 * in the process; otherwise one short locked walk of the caller's
 * attachments. */
FH_API fh_thread *fh_thread_current(fh_heap *h);
/* One word per fh_thread for the embedder (its interpreter state, say);
 * NULL after attach.  Never read or traced by the heap: a heap object it
 * points to is not kept alive by it.  fh_thread_set_user(NULL, ..) sets
 * fh_last_error(); fh_thread_user(NULL) is NULL. */
FH_API void fh_thread_set_user(fh_thread *t, void *user);
static inline void *fh_thread_user(fh_thread *t);

/* ---- allocation -------------------------------------------------------- */
/* Zeroed payload; NULL + fh_last_error() when the heap is full after
 * collecting, or on bad input (unregistered type, wrong size for a fixed
 * type, larger than heap_max).  Inside one of this thread's critical
 * sections no collection can run: the allocation ignores the collection
 * trigger and fails only when the heap has no room left. */
static inline void *fh_alloc(fh_thread *t, uint32_t type, size_t payload_bytes);
FH_API void *fh_alloc_nonmoving(fh_thread *t, uint32_t type, size_t payload_bytes);
/* Payload bytes and type id of an object of any live heap; 0 +
 * fh_last_error() when obj is not one (checked by address, cheaply: NULL,
 * stack, malloc, misaligned and interior pointers, and pointers past the
 * allocated part of a space are refused without touching their memory).
 * Inline for an object of a heap's moving spaces (with
 * collector=mark_sweep, its malloc spaces) or non-moving space (until
 * fh_prefork): a few loads and compares; any other address (image and
 * zygote objects, bad pointers) takes the same checks out of line. */
static inline size_t fh_object_size(const void *obj); /* payload bytes */
static inline uint32_t fh_object_type(const void *obj);

/* Every store of a reference into a heap object goes through the barrier,
 * but those initialising an object this thread just allocated (cons) may
 * be plain while, in between, it calls only fh_write_ref, the root-slot
 * calls and fh_object_size/type, and does not fork (anything else may let
 * a collection run): it is young, or its card is dirty from birth.
 * obj outside this heap's reservation: nothing stored, fh_last_error().
 * The inline path checks nothing more; with verify=1 every store is
 * checked (obj an object, slot inside it, value NULL, an object of this
 * heap or memory outside every heap: another heap's object is refused). */
static inline void fh_write_ref(fh_thread *t, void *obj, void **slot, void *value);

/* Native or kernel access to a movable object's memory: between begin and end
 * the object is fully mapped and no collection can move it.
 * Use the pointer begin returns: when another thread's collection is
 * pending, begin waits for it (as a blocked thread) and the object may
 * move; the result is its current address.  NULL + fh_last_error() when
 * obj is not an object of this heap.  Sections nest (a thread holding one
 * opens more without waiting); each begin needs an end.  Inside a section
 * fh_collect, fh_image_save and fh_prefork are refused, and allocation
 * works until the heap is full (see fh_alloc).  fh_critical_end with a
 * pointer that is not an object still closes the innermost section and
 * sets fh_last_error(). */
FH_API void *fh_critical_begin(fh_thread *t, void *obj);
FH_API void fh_critical_end(fh_thread *t, void *obj);

/* Pinning: between fh_pin and the matching fh_unpin the object does not
 * move and stays alive (a pin is also a root), whatever collects, while
 * other threads' collections go on as usual: an I/O buffer can stay put
 * across collections without holding anyone up.  Pins are counted (pin
 * twice, unpin twice) and belong to the thread that made them: another
 * thread's fh_unpin of the object is refused; fh_thread_detach drops the
 * thread's remaining pins.  A pinned object is always fully mapped, even
 * while a concurrent compaction runs, so read()/write()/fwrite() into it
 * never meet EFAULT.  Image and zygote objects never move; pinning them
 * only counts.  fh_pin: 0, or -1 + fh_last_error() (not an object of this
 * heap, out of memory).  fh_unpin of an object this thread has not pinned
 * sets fh_last_error(). */
FH_API int fh_pin(fh_thread *t, void *obj);
FH_API void fh_unpin(fh_thread *t, void *obj);

/* ---- roots ------------------------------------------------------------- */
FH_API void fh_root_add(fh_heap *h, void **slot);
FH_API void fh_root_remove(fh_heap *h, void **slot);
/* The root stack: each pushed slot is read, and updated when its object
 * moves, by every collection until it is popped.  A slot holds NULL, an
 * object of this heap or memory outside every heap. */
static inline void fh_push_root(fh_thread *t, void **slot); /* slot != NULL */
/* Pushes slots[0..n) in order with one bounds check (n == 0: nothing).  A
 * NULL thread, or a NULL slots array with n > 0 or a NULL entry: nothing is
 * pushed, fh_last_error() says why; so too when the stack cannot grow (out
 * of memory).  FH_PUSH_ROOTS below does the same for 1 to 8 slots named
 * in place. */
static inline void fh_push_roots(fh_thread *t, void **const *slots, size_t n);
static inline void fh_pop_roots(fh_thread *t, size_t n);
/* Mark and reset, for non-local exits (longjmp, C++ exceptions, an
 * interpreter's error unwinding): take a mark where the exit lands, and
 * after it reset the stack to the mark, dropping whatever the frames in
 * between pushed and never popped.  A mark is the stack's depth (the count
 * of pushed slots), valid while the stack is at least that deep; it
 * survives the stack's growth.  fh_root_mark(NULL) is 0.  fh_root_reset
 * with a mark above the current depth (a stale mark, or one of another
 * thread) changes nothing and sets fh_last_error(). */
static inline size_t fh_root_mark(fh_thread *t);
static inline void fh_root_reset(fh_thread *t, size_t mark);
/* FH_PUSH_ROOTS(t, &a, &b, &c): push 1 to 8 slots in one go (more do not
 * compile), as fh_push_roots does (one bounds check; nothing pushed on
 * error), with the addresses stored straight into the root stack (no
 * array).  Pop them with fh_pop_roots(t, 3), or reset to a mark taken
 * before. */
#define FH_PUSH_ROOTS(t, ...)                                                  \
  fh__push_roots8((t), FH__NARGS(__VA_ARGS__), FH__PAD8(__VA_ARGS__))
/* The embedder's root scanner: calls visit(slot, visit_ctx) for every root
 * slot it owns (slots follow the same rules as object fields, tagged
 * values included).  It runs on the collecting thread with the world
 * stopped, one or more times per collection (marking, then again in the
 * update passes of collectors that move objects), and must visit the same
 * slots each time within one collection.  It must not allocate, take locks
 * that a mutator may hold at a safepoint, or call the heap.  One scanner per
 * heap: setting a second one while another is set is refused (the first
 * stays, fh_last_error() names it); set NULL to remove it, then set the
 * new one.  Setting the same scanner and user again does nothing. */
typedef void (*fh_root_scanner)(fh_visit_fn visit, void *visit_ctx, void *user);
FH_API void fh_set_root_scanner(fh_heap *h, fh_root_scanner scan, void *user);

/* ---- weak references, finalization, identity ------------------------------ */
/* Ephemerons.  A built-in heap object holding (key, value): the value is
 * reachable through the ephemeron only while the key is reachable by some
 * other path.  Once a collection finds the key unreachable, key and value
 * read NULL for ever after (the ephemeron is cleared).  A weak reference is
 * an ephemeron whose value is NULL.  Keys and values may be any heap
 * objects (image, zygote, non-moving or movable) or NULL; an ephemeron made
 * with a NULL key is born cleared.  Ephemerons are ordinary objects: store
 * them in reference slots (a weak hash table is an array or chains of
 * them), root them, save them in images.  The chain of ephemerons in which
 * each value is the next key dies in one collection when its head does.
 * An ephemeron whose key lies in the image or zygote space never clears
 * (those spaces are never collected).  fh_ephemeron_new returns NULL +
 * fh_last_error() on failure and may collect; the other three never
 * collect and report a non-ephemeron argument through fh_last_error().
 * The three accessors are inline: an ephemeron of this heap is recognised
 * by its address range and header, anything else goes to a checked slow
 * path (as for fh_write_ref, a pointer inside the heap's reservation is
 * trusted to have readable memory before it; verify=1 checks it fully). */
FH_API void *fh_ephemeron_new(fh_thread *t, void *key, void *value);
static inline void *fh_ephemeron_key(fh_thread *t, void *eph);
static inline void *fh_ephemeron_value(fh_thread *t, void *eph);
static inline void fh_ephemeron_set_value(fh_thread *t, void *eph, void *value); /* cleared: no-op */

/* Finalization.  After a collection finds obj unreachable except through
 * finalization records, obj (and everything it references) is kept alive
 * and queued, once per record; the record is then gone (attach again to be
 * told again: resurrection is allowed).  The queue is filled by the time
 * fh_collect returns (for a concurrent kind, by the end of its pause).
 * fh_finalizer_pop returns 1 with *obj and *data set (the caller roots
 * *obj while it uses it), or 0 when the queue is empty; thread-safe, from
 * any attached thread.  There is no order among objects queued by the same
 * collection.  An object kept alive for finalization keeps its ephemerons
 * (they are not cleared while it is queued or resurrected).  `data` is an
 * opaque word, never traced.  notify, if set, is called on the thread that
 * collected, after the pause and outside any lock of the heap and any
 * signal handler, whenever a collection takes the queue from empty to
 * non-empty: wake a finalizer thread, or pop there; it must not allocate
 * (it may run inside the allocation that triggered the collection).  An
 * object in the image or zygote space is never collected, so its finalizer
 * never runs.  fh_prefork refuses (-1 + error) while the queue is not
 * empty: pop and finalize first, so that objects already found dead are
 * finalized once, by the parent, not again by every child (a temporary
 * file removed n times).  After any fork both processes hold the same
 * records, and each finalizes its own copy of an object that dies in it
 * (right for per-process resources: descriptors, fh_malloc memory).
 * fh_finalizer_attach: 0, or -1 + fh_last_error(); it and
 * fh_finalizer_pop may collect. */
FH_API int fh_finalizer_attach(fh_thread *t, void *obj, void *data);
FH_API int fh_finalizer_pop(fh_thread *t, void **obj, void **data);
FH_API void fh_set_finalizer_notify(fh_heap *h, void (*notify)(fh_heap *h, void *user),
                                    void *user);

/* Identity hash: the same nonzero value for the object's whole life, across
 * every collection, move, fh_prefork and image save/load, under every
 * collector.  Distinct live objects never share a value (a bijective mix of
 * a key unique among live hashed objects: the address at the first hash,
 * plus a salt when that address once belonged to another hashed object that
 * still lives elsewhere).  A hashed object that moves carries its hash in
 * one extra word.  Inline once hashed; never collects.  0 + fh_last_error()
 * when obj is not an object of this heap, or (first hash only) when its
 * moving space has no 8 bytes left for that word, or when 8192 live objects
 * were all first hashed at this same address. */
static inline uint64_t fh_object_hash(fh_thread *t, const void *obj);

/* ---- collection -------------------------------------------------------- */
typedef enum {
  FH_COLLECT_DEFAULT,
  FH_COLLECT_SEMISPACE,
  FH_COLLECT_MARK_SWEEP,
  FH_COLLECT_HSPACE_COMPACT,
  FH_COLLECT_MARK_COMPACT,
  FH_COLLECT_CONCURRENT_COMPACT,
  /* A young collection where the heap's collector has generations
   * (gen_semispace; mark_compact and concurrent_compact with
   * generational=1, when the generations are known: right after another
   * kind of collection it is a full one); elsewhere the same as
   * FH_COLLECT_DEFAULT.  On a generational heap FH_COLLECT_DEFAULT
   * collects the whole heap. */
  FH_COLLECT_YOUNG,
  /* The collection the allocation trigger would start now (the default
   * kind; on a generational heap the policy chooses young or full).  With
   * concurrent_mark=1 on mark_sweep and concurrent_compact its marking is
   * concurrent: fh_collect returns after the initial (roots) pause, and
   * the marker's remark pause ends the cycle later (fh_stats.kind_pauses
   * [FH_PAUSE_REMARK] counts them; fh_gc_wait does not wait for it).  On
   * concurrent_compact with a large heap the remark only ends the marking:
   * the marker computes the forwarding with the world running and a
   * second short pause flips (FH_PAUSE_FLIP).  fh_stats.concurrent_marks_done
   * counts the cycles that ended.  A collection requested meanwhile
   * finishes that cycle first. */
  FH_COLLECT_TRIGGERED
} fh_collect_kind;
/* 0, or -1 + fh_last_error().  Concurrent kinds return after the pause. */
FH_API int fh_collect(fh_thread *t, fh_collect_kind k);
FH_API void fh_gc_wait(fh_heap *h);
FH_API void fh_set_background(fh_heap *h, int background);

/* Watching collections.  A start event comes before a collection stops the
 * world, an end event after it has resumed it (for a concurrent kind, after
 * its pause: the compaction goes on).  Both come on the collecting thread,
 * outside the heap's locks; the callback must not allocate, collect or
 * block for long.  One callback per heap: set NULL to remove it (setting
 * another while one is set is refused with an error). */
typedef struct fh_gc_event {
  int end;               /* 0: start, 1: end */
  uint64_t number;       /* this collection's number, from 1 */
  const char *collector; /* "semispace", "mark_compact", ... */
  const char *cause;     /* "explicit", "allocation", "allocation failure", "background" */
  int young;             /* end events: 1 for a young collection (gen_semispace), else 0 */
  /* End events only (0 in a start event, but for live_before): */
  uint64_t pause_ns;
  size_t live_before;    /* bytes in use when it started */
  size_t live_after;     /* bytes live after it */
  size_t heap_target;    /* in use when the next collection triggers */
  uint64_t moved;        /* bytes it copied or slid */
  uint64_t uffd_faults;  /* mutator faults during its concurrent phase so far */
  uint64_t weak_ns;      /* of the pause, on ephemerons and finalization */
} fh_gc_event;
FH_API void fh_set_gc_callback(fh_heap *h, void (*fn)(fh_heap *h, const fh_gc_event *e, void *user),
                               void *user);

/* ---- fork ---------------------------------------------------------------- */
/* Before forking children that should share the heap copy-on-write (a
 * zygote, a preforking server): a full collection, then every live movable
 * object is copied, depth-first from the roots, into the zygote space,
 * which is never collected, moved or written by the heap again; the moving
 * spaces are emptied, free memory is returned, and the heap's own threads
 * are stopped and joined.  The caller must be the only attached thread
 * (else -1 + fh_last_error(), nothing done).  Calling it again later adds a
 * generation to the zygote space.  Room for the zygote is reserved beside
 * the non-moving space (heap_max more), so the first generation fits
 * whenever the live data fits under heap_max, whatever non_moving_max is;
 * -1 + error when a later generation finds that room used up (the heap is
 * unchanged).  Pinned objects (fh_pin, and with stack_roots=conservative
 * every object a stack word points into) are not copied: they stay at their
 * addresses in their moving space, which afterwards holds only them, and
 * move only once unpinned (references to them from zygote objects are
 * updated then); pinned non-moving objects are frozen into the zygote like
 * every other non-moving object (they never move either way).
 * Then fork(), and call fh_postfork_parent in the parent and
 * fh_postfork_child in the child.  A plain fork() without these calls is
 * safe too, from any thread while others allocate (pthread_atfork
 * handlers: the world is stopped across the fork, so every other attached
 * thread must reach a safepoint or be in a blocking region, as for a
 * collection; in the child only the forking thread stays attached, and
 * what only the others' roots reached is garbage there, and what only their
 * pins held is no longer pinned). */
FH_API int fh_prefork(fh_thread *t);
FH_API void fh_postfork_parent(fh_heap *h); /* heap threads restart on demand */
FH_API void fh_postfork_child(fh_heap *h);  /* own userfaultfd, fresh counters */

/* ---- native memory ------------------------------------------------------- */
/* malloc replacement for runtime buffers: never moved or collected, counted
 * by the heap (heavy native allocation brings the next collection forward,
 * and fh_get_stats shows it as the "native" space).  Zeroed; n == 0 gives a
 * minimal block.  NULL + fh_last_error() when native memory is exhausted.  fh_free(h, NULL) does nothing; freeing memory
 * that fh_malloc did not return is refused with an error. */
FH_API void *fh_malloc(fh_heap *h, size_t n);
FH_API void fh_free(fh_heap *h, void *p);

/* ---- images ------------------------------------------------------------ */
/* Write the transitive closure of roots[0..nroots) (NULL entries allowed) to
 * `path` as a heap image, atomically (temporary file + rename).  Each root
 * must be an object of this heap; `path` must not be empty nor name an
 * existing non-regular file (directory, FIFO, device), refused before the
 * world stops.  Every
 * registered type must be describable without a trace callback; an object
 * holding a pointer outside the heap cannot be saved.  0, or -1 +
 * fh_last_error() (nothing is written under `path` then).  The world is
 * stopped while the closure is copied; nothing moves, so pins do not matter
 * (a pinned object is saved like any other, and the image records no pin). */
FH_API int fh_image_save(fh_thread *t, const char *path, void **roots, size_t nroots);
/* The roots of the image mapped by image_path=, in the order saved: sets
 * *roots to an array owned by the heap and returns its length (0 and NULL
 * without an image).  Image objects never move and are never freed. */
FH_API size_t fh_image_roots(fh_heap *h, void ***roots);

/* ---- capabilities -------------------------------------------------------- */
enum {
  FH_CAP_UFFD = 1,
  FH_CAP_DONTUNMAP = 2,
  FH_CAP_UFFD_MOVE = 4,
  FH_CAP_UFFD_SIGBUS = 8,
  FH_CAP_UFFD_MINOR = 16
};
FH_API unsigned fh_capabilities(void);

/* ---- statistics ---------------------------------------------------------- */
typedef struct fh_space_stats {
  const char *name;
  size_t capacity, used, resident;
} fh_space_stats;
/* Stop-the-world pauses by what they do (fh_stats.kind_pauses,
 * recent_pauses): a whole collection in the pause (every collector's but
 * the two below), a young collection (gen_semispace), the pause of a
 * concurrent compaction that flips the spaces (today it also marks), the
 * remark pause and the root pause of a concurrent marking (mark_sweep's
 * with concurrent_mark=1).
 * FH_PAUSE_KINDS leaves room for more. */
typedef enum fh_pause_kind {
  FH_PAUSE_FULL,
  FH_PAUSE_YOUNG,
  FH_PAUSE_FLIP,
  FH_PAUSE_REMARK,
  FH_PAUSE_ROOTS
} fh_pause_kind;
#define FH_PAUSE_KINDS 8
#define FH_PAUSE_RECENT 64
typedef struct fh_pause_record {
  uint64_t start_ns; /* CLOCK_MONOTONIC when the world began to stop */
  uint64_t ns;       /* its length: from then until the world resumed */
  uint64_t stop_ns;  /* of ns: until every other thread had parked (time to safepoint) */
  uint32_t kind;     /* fh_pause_kind */
} fh_pause_record;
/* The last compacting cycle (mark_compact, concurrent_compact; zero until
 * one ran), nanoseconds: where its pause went, and its concurrent phase
 * (figures of the phase once it has ended; 0 while one runs). */
typedef struct fh_cycle_stats {
  uint64_t mark_ns;           /* pause: marking (all of it, until marking is concurrent) */
  uint64_t forward_ns;        /* pause: computing forwarding and the from-space ledger */
  uint64_t update_ns;         /* pause: updating references (slide: and sliding) */
  uint64_t flip_mremap_ns;    /* pause: mremap of the space (0 for a slide) */
  uint64_t flip_register_ns;  /* pause: UFFDIO_REGISTER of the destination */
  uint64_t build_ns;          /* pause: building pages (stop-the-world), wall */
  uint64_t build_cpu_ns;      /* ... CPU time of its threads, summed */
  uint64_t build_threads;     /* ... threads that built */
  uint64_t concurrent_mark_ns; /* concurrent marking, wall (none yet: 0) */
  uint64_t worker_ns;         /* concurrent phase: the worker's busy time, wall */
  uint64_t worker_cpu_ns;     /* ... the CPU time it got meanwhile */
  uint64_t worker_bytes;      /* ... destination bytes it built */
  uint64_t release_cpu_ns;    /* ... CPU time of the from-space releaser */
  uint64_t live_bytes;        /* moving-space bytes left live */
  uint64_t table_bytes;       /* side tables: bitmaps, offsets, page states, ledger */
  uint64_t pinned_ranges, pinned_bytes; /* kept in place for pins */
} fh_cycle_stats;
typedef struct fh_stats {
  uint64_t collections, bytes_allocated, bytes_freed, bytes_moved;
  uint64_t pause_ns_total, pause_ns_max;
  uint64_t uffd_faults, uffd_fault_ns_max;
  unsigned nspaces;
  fh_space_stats spaces[12]; /* at most 9 today: bump x2, non-moving, large objects,
                              * malloc x2, image, zygote, fh_malloc memory */
  /* Weak processing (ephemerons, finalization), summed over collections:
   * ephemerons met by tracing, those cleared, objects queued for
   * finalization, and the time after the strong closure spent resolving
   * ephemerons and finalizing (inside the pause), total and largest. */
  uint64_t ephemerons_traced, ephemerons_cleared, objects_finalized;
  uint64_t weak_ns_total, weak_ns_max;
  /* Pins: objects pinned at the last collection (fh_pin and, with
   * stack_roots=conservative, stack words: pinned_last counts each object
   * once, conservative_pinned_last those a stack word pinned), and the
   * stack scanning, summed over collections: words read, time, and the
   * longest scan. */
  uint64_t pinned_last, conservative_pinned_last;
  uint64_t stack_words_scanned, stack_scan_ns_total, stack_scan_ns_max;
  /* Pause distribution: pause_hist[k] counts the pauses of at least 2^k
   * microseconds and less than 2^(k+1) (k = 0 also counts those under
   * 1 us; the last bucket everything longer). */
#define FH_PAUSE_BUCKETS 24
  uint64_t pause_hist[FH_PAUSE_BUCKETS];
  /* What collections cost the CPU and the kernel, summed: user and system
   * time and page faults of the collecting thread inside each pause and of
   * the heap's GC worker threads (parallel markers, page builders, the
   * concurrent compactor's worker, sweeper and releasers), and how many
   * such threads were ever started (a pool: they persist between
   * collections).  Faults mutators take on pages a concurrent compaction
   * has not built yet are uffd_faults, not these. */
  uint64_t gc_user_ns, gc_sys_ns, gc_minor_faults, gc_major_faults;
  uint64_t gc_threads_started;
  /* Sliding compactions (mark_compact, concurrent_compact) by how they
   * compacted: slid in place in the pause (every mark_compact cycle, and
   * concurrent_compact's cycles with little live data), or moved aside and
   * built (concurrent_compact's flips, and the pause builds of flips that
   * failed). */
  uint64_t compactions_slid, compactions_built;
  /* Generations (collector=gen_semispace): young collections and their
   * pauses; full_* counts every other collection (with a collector that has
   * no young collections, all of them), so young + full = collections.
   * bytes_promoted: copied into the promote (non-moving) space. */
  uint64_t young_collections, young_pause_ns_total, young_pause_ns_max;
  uint64_t full_collections, full_pause_ns_total, full_pause_ns_max;
  uint64_t bytes_promoted;
  /* Every stop-the-world pause, by kind (fh_pause_kind); pause_hist,
   * pause_ns_total and pause_ns_max count all of them. */
  uint64_t pauses;                           /* of every kind: the sum of pause_hist */
  uint64_t kind_pauses[FH_PAUSE_KINDS];      /* pauses of each kind */
  uint64_t kind_pause_ns_total[FH_PAUSE_KINDS], kind_pause_ns_max[FH_PAUSE_KINDS];
  /* The last FH_PAUSE_RECENT pauses (as Go's MemStats.PauseNs): pause i,
   * counted from 0, is recent_pauses[i % FH_PAUSE_RECENT]; the last
   * min(pauses, FH_PAUSE_RECENT) are filled. */
  fh_pause_record recent_pauses[FH_PAUSE_RECENT];
  fh_cycle_stats last_cycle;     /* the last compacting cycle's parts */
  /* Mutator faults on a concurrent compaction's pages: service time
   * (building the page and installing it) summed, and its median and 99th
   * percentile, over the faults served so far (uffd_faults counts them
   * once a concurrent phase ends). */
  uint64_t uffd_fault_ns_total, uffd_fault_p50_ns, uffd_fault_p99_ns;
  /* Concurrent marking (collector=mark_sweep, concurrent_mark=1): cycles
   * that marked concurrently (each counted once in collections, at its
   * initial pause), their remark pauses (in pause_ns_* and pause_hist too),
   * and the marker's wall and CPU time and the bytes it marked. */
  uint64_t concurrent_marks, remark_ns_total, remark_ns_max;
  uint64_t marker_ns, marker_cpu_ns, marker_bytes;
  /* Of concurrent_marks, the cycles that have ended (finished or
   * abandoned): equal when no concurrent marking runs. */
  uint64_t concurrent_marks_done;
  /* Paced GC work (gc_cpu_pct): the sleeps between its bursts and their
   * total time. */
  uint64_t gc_pace_rests, gc_pace_rest_ns;
} fh_stats;
FH_API void fh_get_stats(fh_heap *h, fh_stats *s);
FH_API void fh_dump(fh_heap *h, FILE *out);
/* Lock-free readings for a thread that watches a collection from outside
 * (any thread, attached or not; fh_get_stats waits for a pause to end):
 * 1 while a collection's concurrent phase runs (a non-blocking
 * fh_gc_wait), and the bytes of collector memory that come and go inside
 * a cycle resident now (the helper markers' bitmaps), never more than is
 * there. */
FH_API int fh_gc_phase_open(fh_heap *h);
FH_API size_t fh_gc_transient_bytes(fh_heap *h);
/* Minimum mutator utilisation (Cheng and Blelloch): the least fraction of
 * any window of window_ns inside [begin_ns, end_ns) not covered by the
 * given stalls (intervals, any order, may overlap; clipped to the span).
 * A window wider than the span is the span.  From recent_pauses, or from
 * the gaps a program sees between its own operations.  1.0 for an empty
 * span or no stalls; -1.0 + fh_last_error() for a NULL list of n > 0 or
 * window_ns 0 (or no memory for a sorted copy).  O(n log n). */
typedef struct fh_interval {
  uint64_t begin_ns, end_ns;
} fh_interval;
FH_API double fh_mmu(const fh_interval *stalls, size_t n, uint64_t begin_ns, uint64_t end_ns,
                     uint64_t window_ns);

/* The inline fast paths the declarations above refer to. */
#include "faultheap_inline.h"

#ifdef __cplusplus
}
#endif
#endif /* FAULTHEAP_H_ */
