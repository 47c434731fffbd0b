/* Watching collections: fh_set_gc_callback's start and end events for
 * every collector (in order, numbered, with figures that add up), one
 * callback per heap, and trace=1's line per collection on stderr. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support_configs.h"

typedef struct seen {
  int starts, ends;
  uint64_t last_number;
  int out_of_order;
  uint64_t moved, pause_ns;
  size_t live_after, target;
  char collector[32];
} seen;

static void on_gc(fh_heap *h, const fh_gc_event *e, void *user) {
  seen *s = user;
  /* The callback may read the statistics (no heap lock is held). */
  fh_stats now;
  fh_get_stats(h, &now);
  if (now.collections != e->number - (e->end ? 0 : 1)) s->out_of_order = 1;
  if (!e->end) {
    if (s->starts != s->ends || e->number != s->last_number + 1) s->out_of_order = 1;
    s->starts++;
    s->last_number = e->number;
    snprintf(s->collector, sizeof s->collector, "%s", e->collector);
    return;
  }
  if (s->starts != s->ends + 1 || e->number != s->last_number) s->out_of_order = 1;
  s->ends++;
  s->moved += e->moved;
  s->pause_ns = e->pause_ns;
  s->live_after = e->live_after;
  s->target = e->heap_target;
}

static void test_events_every_collector(void **st) {
  (void)st;
  for (size_t ci = 0; ci < test_nconfigs; ci++) {
    const test_config *c = &test_configs[ci];
    test_types ty;
    fh_thread *t;
    fh_heap *h = test_config_heap(c, &ty, &t);
    seen s = {0};
    fh_set_gc_callback(h, on_gc, &s);
    test_ring ring;
    test_ring_build(t, &ty, &ring, 20000, 7, 3); /* garbage in between: things move */
    for (int i = 0; i < 4; i++) test_config_collect(c, t, i);
    fh_gc_wait(h);
    fh_stats st2;
    fh_get_stats(h, &st2);
    assert_false(s.out_of_order);
    assert_int_equal(s.starts, s.ends);
    assert_int_equal((uint64_t)s.ends, st2.collections); /* triggered ones too */
    assert_true(s.pause_ns > 0);
    assert_true(s.live_after >= 20000 * sizeof(tnode));
    assert_true(s.target > s.live_after);
    if (strcmp(c->collector, "mark_sweep") != 0) assert_true(s.moved > 0);
    /* one callback per heap */
    static int other;
    fh_set_gc_callback(h, on_gc, &other);
    assert_non_null(strstr(fh_last_error(), "already set"));
    fh_set_gc_callback(h, NULL, NULL);
    int ends = s.ends;
    assert_int_equal(fh_collect(t, c->kinds[0]), 0);
    assert_int_equal(s.ends, ends); /* removed */
    fh_pop_roots(t, 1);
    test_config_teardown(h, t);
  }
}

/* trace=1: one line per collection on stderr. */
static void test_trace_line(void **st) {
  (void)st;
  char path[] = "/tmp/fh_trace_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  test_types ty;
  fh_thread *t;
  fh_heap *h = test_heap_attached("mark_compact", "heap_max=16M,trace=1", &ty, &t);
  assert_int_equal(fh_collect(t, FH_COLLECT_DEFAULT), 0);
  assert_int_equal(fh_collect(t, FH_COLLECT_SEMISPACE), 0);
  fh_thread_detach(t);
  fh_heap_destroy(h);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char buf[2048] = {0};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(path);
  assert_true(n > 0);
  assert_non_null(strstr(buf, "faultheap gc 1: mark_compact (explicit, full) pause "));
  assert_non_null(strstr(buf, "faultheap gc 2: semispace (explicit, full)"));
  assert_non_null(strstr(buf, "live "));
  assert_non_null(strstr(buf, "target "));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_events_every_collector),
      cmocka_unit_test(test_trace_line),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
