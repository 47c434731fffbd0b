/* What the concurrent-marking suites (mark_sweep and concurrent_compact
 * with concurrent_mark=1) share.  test_rewire_run: four mutators rewire a graph
 * while cycles mark (move a reference from one node to another and drop
 * the original, swap array slots, hold a node only in a root for a while,
 * hash nodes, keep nodes long enough to get old), a fifth thread attaches,
 * allocates and detaches over and over, and every node's checksum is
 * checked as it is read. */
#ifndef FH_TEST_SUPPORT_CMARK_H_
#define FH_TEST_SUPPORT_CMARK_H_

#include "support_heap.h"

/* Start the cycle the allocation trigger would (its roots pause). */
void test_cmark_start_cycle(fh_thread *t);
/* Finish it: the remark pause (marking left is finished there), then the
 * phase after it. */
void test_cmark_remark(fh_thread *t);

/* On a heap made from spec (concurrent_mark=1 and the collector in it):
 * runs for at least ms milliseconds or until 100 remark pauses, and until
 * one cycle has marked concurrently (at most 12 s: a TSan build's
 * generational heap may need long for its first full cycle).  Asserts
 * every node intact and a concurrent cycle with its remark. */
void test_rewire_run(const char *spec, int ms);

/* The lifecycle while a cycle marks, on a heap of `collector` made with
 * `rest` (concurrent_mark=1 in it): destroying the heap abandons the cycle
 * and joins the marker; fork (a cycle left open, then the real marker)
 * leaves the child no cycle half-marked and both sides collecting with
 * every object intact; fh_prefork finishes the cycle first. */
void test_cmark_destroy_while_marking(const char *collector, const char *rest);
void test_cmark_fork_while_marking(const char *collector, const char *rest);
void test_cmark_prefork_while_marking(const char *collector, const char *rest);

#endif
