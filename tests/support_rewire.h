/* A stress shared by the concurrent-marking suites (mark_sweep and
 * concurrent_compact with concurrent_mark=1): four mutators rewire a graph
 * while cycles mark (move a reference from one node to another and drop
 * the original, swap array slots, hold a node only in a root for a while,
 * hash nodes, keep nodes long enough to get old), a fifth thread attaches,
 * allocates and detaches over and over, and every node's checksum is
 * checked as it is read. */
#ifndef FH_TEST_SUPPORT_REWIRE_H_
#define FH_TEST_SUPPORT_REWIRE_H_

/* On a heap made from spec (concurrent_mark=1 and the collector in it):
 * runs for at least ms milliseconds or until 100 remark pauses, and until
 * one cycle has marked concurrently (at most 12 s: a TSan build's
 * generational heap may need long for its first full cycle).  Asserts
 * every node intact and a concurrent cycle with its remark. */
void test_rewire_run(const char *spec, int ms);

#endif
