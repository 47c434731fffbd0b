/* A stress shared by the generational suites (gen_semispace, generational
 * mark-compact): several mutators grow old structures with young objects
 * through fh_write_ref and drop most of what they allocate, under
 * triggered collections (young and full by policy) and explicit ones. */
#ifndef FH_TEST_SUPPORT_GEN_H_
#define FH_TEST_SUPPORT_GEN_H_

#include "support_heap.h"

/* Three mutators on a heap made from spec (verify=1 belongs in it), each
 * running iters steps with an explicit collection every collect_every
 * steps, a full one every full_period-th of those and young otherwise.
 * Asserts every object intact, young and full collections both run, and
 * some bytes promoted. */
void test_gen_stress(const char *spec, int iters, int collect_every, int full_period);

/* One attached thread keeps 50,000 of a million nodes, each slot written
 * twice, so old garbage piles up: allocation-triggered collections must
 * be both young and full.  Asserts the kept nodes intact and both kinds
 * counted; the caller's heap and thread are left as they were. */
void test_gen_policy_workload(fh_heap *h, fh_thread *t, const test_types *ty);

/* Generational mark-compact (tests of collectors/mc_gen.h): a heap on
 * mark_compact (c == 0) or concurrent_compact (c == 1; mark_compact where
 * userfaultfd is missing) with spec rest, attached; whether p lies in the
 * old or the mid generation; whether obj's card is dirty; n garbage nodes. */
#define TEST_GEN_NCOLL 2
extern const char *const test_gen_mc_collectors[TEST_GEN_NCOLL]; /* mark_compact, concurrent_compact */
fh_heap *test_gen_mc_heap(int c, const char *rest, test_types *ty, fh_thread **t);
/* Detach t and destroy h. */
void test_gen_done(fh_heap *h, fh_thread *t);
int test_gen_in_old(fh_heap *h, const void *p);
int test_gen_in_mid(fh_heap *h, const void *p);
int test_gen_card_dirty(fh_heap *h, const void *obj);
void test_gen_garbage(fh_thread *t, const test_types *ty, int n);

/* Large objects' cards in a generational heap (heap/large_objects.h:
 * heap_los_card_settled): *empty and *holder (root slots the caller
 * pushed) become 64 KiB reference arrays, holder[7] a young node of value
 * 7 stored through fh_write_ref; both are born with dirty cards; after one
 * young collection empty's card is clean and holder's still dirty. */
void test_gen_large_cards_first_young(fh_heap *h, fh_thread *t, const test_types *ty,
                                      void ***empty, void ***holder);

/* A store into an old object that bypasses fh_write_ref: verify=1 names
 * the holder (its type and slot) before the young collection that would
 * lose the referent, aborting a child heap of `collector`; in_old says
 * where the collector's old generation is. */
void test_gen_missing_barrier(const char *collector, int (*in_old)(fh_heap *, const void *));

#endif
