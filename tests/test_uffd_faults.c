/* uffd/ fault delivery: SIGBUS mode and handler-thread mode, races between
 * resolvers and a background filler, chaining to the previous SIGBUS
 * handler, kernel-mode accesses, and the end-of-phase protocol. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include "heap/sys.h"
#include "test_uffd.h"
#include "uffd/uffd_internal.h"

typedef struct rctx {
  char *from;            /* "from-space": page i of the range comes from here */
  _Atomic int calls;     /* resolver calls */
  _Atomic int installed; /* COPYs that returned OK */
  _Atomic int existed;   /* COPYs that found the page present */
  _Atomic int other, other_status, other_errno; /* anything else, and the last such */
  _Atomic int fail_first;
  _Atomic unsigned char *flags; /* optional: wait for flags[i] before COPY */
  _Atomic int in_resolver, resolver_done;
  int sleep_ms;
  int zero; /* resolve with ZEROPAGE */
} rctx;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* Builds the page in the thread's scratch buffer (as the compactor will)
 * and installs it.  Async-signal-safe. */
static int resolver(void *arg, const fh_uffd_fault *f) {
  rctx *c = arg;
  size_t idx = (f->page - f->range_lo) / PG;
  atomic_fetch_add(&c->calls, 1);
  if (atomic_exchange(&c->fail_first, 0))
    return FH_UFFD_RESOLVE_FAILED;
  if (c->flags) { /* wait for the third party to install it */
    for (int i = 0; !atomic_load(&c->flags[idx]); i++) {
      if (i > 200000)
        return FH_UFFD_RESOLVE_FAILED;
      struct timespec ts = {0, 5000};
      nanosleep(&ts, NULL);
    }
  }
  if (c->sleep_ms) {
    atomic_store(&c->in_resolver, 1);
    struct timespec ts = {0, (long)c->sleep_ms * 1000000L};
    nanosleep(&ts, NULL);
  }
  fh_uffd_status s;
  if (c->zero) {
    s = fh_uffd_zeropage(f->fd, (void *)f->page, PG, 0, NULL);
  } else {
    void *buf = fh_uffd_thread_buf();
    if (!buf)
      return FH_UFFD_RESOLVE_FAILED;
    memcpy(buf, c->from + idx * PG, PG);
    s = fh_uffd_copy(f->fd, (void *)f->page, buf, PG, 0, NULL);
  }
  if (c->sleep_ms)
    atomic_store(&c->resolver_done, 1);
  if (s == FH_UFFD_OK) {
    atomic_fetch_add(&c->installed, 1);
    return FH_UFFD_RESOLVED;
  }
  if (s == FH_UFFD_EXISTED || s == FH_UFFD_ENOENT) {
    /* lost a race, or the range was retired under us: the access retries */
    atomic_fetch_add(&c->existed, 1);
    return FH_UFFD_RESOLVED_EXISTED;
  }
  atomic_store(&c->other_errno, errno);
  atomic_store(&c->other_status, (int)s);
  atomic_fetch_add(&c->other, 1);
  return FH_UFFD_RESOLVE_FAILED;
}

/* Loads from faulting pages are summed here so they are not optimised away;
 * atomic because several threads touch pages at once. */
static _Atomic uint64_t sink;
static void consume(uint64_t v) { atomic_fetch_add_explicit(&sink, v, memory_order_relaxed); }

static void touch_all(char *base, size_t npages) {
  for (size_t i = 0; i < npages; i++)
    consume(*(volatile uint64_t *)(base + i * PG));
}

static void basic(fh_uffd_mode mode, int zero) {
  enum { N = 32 };
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  assert_int_equal(fh_uffd_get_mode(u), mode);
  char *from = map_anon(N * PG), *to = map_anon(N * PG);
  fill_pattern(from, N);
  rctx c = {.from = from, .zero = zero};
  uint64_t ioctls = 0;
  int id = fh_uffd_range_add(u, to, N * PG, FH_UFFD_REG_MISSING, resolver, &c, &ioctls);
  assert_true(id >= 0);
  assert_true(ioctls & (1ull << _UFFDIO_COPY));
  /* overlapping a live range: refused */
  assert_int_equal(fh_uffd_range_add(u, to, PG, FH_UFFD_REG_MISSING, resolver, &c, NULL), -1);
  assert_int_equal(errno, EEXIST);
  touch_all(to, N);
  for (size_t i = 0; i < N; i++)
    assert_true(zero ? page_is_zero(to + i * PG) : page_has_pattern(to + i * PG, i));
  /* retiring waits for the handlers, so their counts are final after it */
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  assert_int_equal(fh_uffd_range_retire(u, id), -1); /* not live any more */
  assert_int_equal(atomic_load(&c.installed), N);
  fh_uffd_stats s;
  fh_uffd_get_stats(u, &s);
  assert_int_equal(s.faults, N);
  assert_true(s.fault_ns_max > 0 && s.fault_ns_total >= s.fault_ns_max);
  assert_int_equal(s.failed, 0);
  fh_uffd_destroy(u);
  munmap(from, N * PG);
  munmap(to, N * PG);
}

static void test_sigbus_copy(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  basic(FH_UFFD_SIGBUS, 0);
}

static void test_thread_copy(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  basic(FH_UFFD_THREAD, 0);
}

static void test_thread_zeropage(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  basic(FH_UFFD_THREAD, 1);
}

static void test_sigbus_zeropage(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  basic(FH_UFFD_SIGBUS, 1);
}

/* ---- two threads fault the same page while a third installs it -------- */

typedef struct race {
  char *to, *from;
  size_t npages;
  pthread_barrier_t *bar;
  fh_uffd *u;
  int dontwake;
  _Atomic unsigned char *flags;
  _Atomic int third_ok, third_existed, third_other, third_status, third_errno;
} race;

static void *race_toucher(void *p) {
  race *r = p;
  for (size_t i = 0; i < r->npages; i++) {
    pthread_barrier_wait(r->bar);
    consume(*(volatile uint64_t *)(r->to + i * PG));
  }
  return NULL;
}

static void *race_installer(void *p) {
  race *r = p;
  for (size_t i = 0; i < r->npages; i++) {
    pthread_barrier_wait(r->bar);
    if (r->dontwake)
      sleep_ms(1); /* let the touchers block in the kernel first */
    fh_uffd_status s = fh_uffd_copy(fh_uffd_fd(r->u), r->to + i * PG, r->from + i * PG,
                                    PG, r->dontwake ? FH_UFFD_DONTWAKE : 0, NULL);
    if (s == FH_UFFD_OK) {
      atomic_fetch_add(&r->third_ok, 1);
    } else if (s == FH_UFFD_EXISTED) {
      atomic_fetch_add(&r->third_existed, 1);
    } else {
      atomic_store(&r->third_errno, errno);
      atomic_store(&r->third_status, (int)s);
      atomic_fetch_add(&r->third_other, 1);
    }
    if (r->flags)
      atomic_store(&r->flags[i], 1);
  }
  return NULL;
}

static void same_page_race(fh_uffd_mode mode, size_t npages, int loser_wakes) {
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  char *from = map_anon(npages * PG), *to = map_anon(npages * PG);
  fill_pattern(from, npages);
  _Atomic unsigned char *flags = calloc(npages, 1);
  assert_non_null(flags);
  rctx c = {.from = from, .flags = loser_wakes ? flags : NULL};
  int id = fh_uffd_range_add(u, to, npages * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, 3);
  race r = {.to = to, .from = from, .npages = npages, .bar = &bar, .u = u,
            .dontwake = loser_wakes, .flags = flags};
  pthread_t t[3];
  pthread_create(&t[0], NULL, race_toucher, &r);
  pthread_create(&t[1], NULL, race_toucher, &r);
  pthread_create(&t[2], NULL, race_installer, &r);
  for (int i = 0; i < 3; i++)
    pthread_join(t[i], NULL);
  for (size_t i = 0; i < npages; i++)
    assert_true(page_has_pattern(to + i * PG, i));
  /* A resolver may have installed a page and woken its toucher but not yet
   * counted it when the joins return: retiring waits for the handlers, so
   * the counts are final only after it. */
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  /* exactly one party installed each page; every other one saw EEXIST */
  if (atomic_load(&r.third_ok) + atomic_load(&c.installed) != (int)npages)
    fail_msg("installer %d ok, %d existed, %d other (last %d errno %d); resolvers %d calls, "
             "%d ok, %d existed, %d other (last %d errno %d)",
             atomic_load(&r.third_ok), atomic_load(&r.third_existed), atomic_load(&r.third_other),
             atomic_load(&r.third_status), atomic_load(&r.third_errno), atomic_load(&c.calls),
             atomic_load(&c.installed), atomic_load(&c.existed), atomic_load(&c.other),
             atomic_load(&c.other_status), atomic_load(&c.other_errno));
  if (loser_wakes) {
    /* the installer always won and never woke anyone: the resolvers, which
     * lost, released the waiting touchers */
    assert_int_equal(atomic_load(&r.third_ok), (int)npages);
    assert_true(atomic_load(&c.existed) >= (int)npages);
  }
  fh_uffd_destroy(u);
  pthread_barrier_destroy(&bar);
  free((void *)flags);
  munmap(from, npages * PG);
  munmap(to, npages * PG);
}

static void test_same_page_race_sigbus(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  same_page_race(FH_UFFD_SIGBUS, 200, 0);
}

static void test_same_page_race_thread(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  same_page_race(FH_UFFD_THREAD, 200, 0);
}

/* The installer uses DONTWAKE; the handler thread's resolver waits for it,
 * loses with EEXIST and must wake the two blocked touchers itself. */
static void test_loser_wakes_waiters(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  same_page_race(FH_UFFD_THREAD, 40, 1);
}

/* ---- resolvers racing a background thread that fills pages in order ---- */

typedef struct bgfill {
  fh_uffd *u;
  char *to, *from;
  size_t npages;
  _Atomic int ok, existed;
  _Atomic int other_status, other_errno; /* the last unexpected result */
} bgfill;

static void *bg_filler(void *p) {
  bgfill *b = p;
  for (size_t i = 0; i < b->npages; i++) {
    fh_uffd_res r;
    fh_uffd_status s = fh_uffd_copy(fh_uffd_fd(b->u), b->to + i * PG, b->from + i * PG,
                                    PG, 0, &r);
    if (s == FH_UFFD_OK) {
      atomic_fetch_add(&b->ok, 1);
    } else if (s == FH_UFFD_EXISTED) {
      atomic_fetch_add(&b->existed, 1);
    } else {
      atomic_store(&b->other_errno, errno);
      atomic_store(&b->other_status, (int)s);
    }
  }
  return NULL;
}

typedef struct toucher {
  char *to;
  size_t npages;
  unsigned seed;
  int reverse;
} toucher;

static void *random_toucher(void *p) {
  toucher *t = p;
  for (size_t k = 0; k < t->npages; k++) {
    size_t i = t->reverse ? t->npages - 1 - k : (size_t)rand_r(&t->seed) % t->npages;
    consume(*(volatile uint64_t *)(t->to + i * PG + (k % 512) * 8));
  }
  return NULL;
}

static void background_race(fh_uffd_mode mode) {
  enum { N = 1024 };
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  char *from = map_anon(N * PG), *to = map_anon(N * PG);
  fill_pattern(from, N);
  rctx c = {.from = from};
  int id = fh_uffd_range_add(u, to, N * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  bgfill b = {.u = u, .to = to, .from = from, .npages = N};
  toucher t1 = {.to = to, .npages = N, .reverse = 1}, t2 = {.to = to, .npages = N, .seed = 7};
  pthread_t th[3];
  pthread_create(&th[0], NULL, bg_filler, &b);
  pthread_create(&th[1], NULL, random_toucher, &t1);
  pthread_create(&th[2], NULL, random_toucher, &t2);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(to + i * PG, i));
  assert_int_equal(fh_uffd_range_retire(u, id), 0); /* the resolvers' counts are final now */
  if (atomic_load(&b.ok) + atomic_load(&b.existed) != N)
    fail_msg("background COPY: %d ok + %d existed of %d; an unexpected result: %s, errno %d (%s)",
             atomic_load(&b.ok), atomic_load(&b.existed), N,
             fh_uffd_status_name((fh_uffd_status)atomic_load(&b.other_status)),
             atomic_load(&b.other_errno), strerror(atomic_load(&b.other_errno)));
  assert_int_equal(atomic_load(&b.ok) + atomic_load(&c.installed), N);
  print_message("  background filled %d, resolvers %d (lost %d races)\n",
                atomic_load(&b.ok), atomic_load(&c.installed), atomic_load(&c.existed));
  fh_uffd_destroy(u);
  munmap(from, N * PG);
  munmap(to, N * PG);
}

static void test_background_race_sigbus(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  background_race(FH_UFFD_SIGBUS);
}

static void test_background_race_thread(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  background_race(FH_UFFD_THREAD);
}

/* ---- a SIGBUS that is not ours reaches the previous handler ------------ */

static sigjmp_buf prev_jmp;
static volatile sig_atomic_t prev_called, prev_code;

static void prev_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)uc;
  prev_called++;
  prev_code = si->si_code;
  siglongjmp(prev_jmp, 1);
}

static void test_sigbus_chains(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  struct sigaction sa, ours;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = prev_handler;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGBUS, &sa, NULL), 0);
  /* ours goes on top and remembers the test's handler */
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
  assert_non_null(u);
  sigaction(SIGBUS, NULL, &ours);
  assert_true(ours.sa_sigaction != prev_handler);

  /* a registered range keeps working meanwhile */
  char *from = map_anon(4 * PG), *to = map_anon(4 * PG);
  fill_pattern(from, 4);
  rctx c = {.from = from};
  int id = fh_uffd_range_add(u, to, 4 * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);

  /* a genuine SIGBUS: a file mapping beyond the end of the file */
  char path[] = "/tmp/fh-uffd-sigbus-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  volatile char *m = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
  assert_true(m != MAP_FAILED);
  prev_called = 0;
  if (sigsetjmp(prev_jmp, 1) == 0) {
    consume(m[0]);
    fail_msg("no SIGBUS beyond EOF");
  }
  assert_int_equal(prev_called, 1);
  assert_int_equal(prev_code, BUS_ADRERR);

  touch_all(to, 4);
  assert_true(page_has_pattern(to + 3 * PG, 3));
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  fh_uffd_destroy(u);

  /* leave SIG_DFL underneath ours, not a handler with a dead jmp_buf */
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = 0;
  sigaction(SIGBUS, &sa, NULL);
  assert_int_equal(fh_uffd_sigbus_install(), 0);
  munmap((void *)m, PG);
  close(fd);
  munmap(from, 4 * PG);
  munmap(to, 4 * PG);
}

/* A resolver that fails in SIGBUS mode: the signal goes on to the previous
 * (default) handler and the process dies of SIGBUS, as it should. */
static void test_sigbus_failed_resolver_kills(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGBUS, &dfl, NULL);
    fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0); /* child has its own fd */
    if (!u)
      _exit(3);
    char *to = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    rctx c = {.from = to};
    atomic_store(&c.fail_first, 1);
    if (fh_uffd_range_add(u, to, PG, FH_UFFD_REG_MISSING, resolver, &c, NULL) < 0)
      _exit(4);
    consume(*(volatile char *)to);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGBUS);
}

/* Thread mode: a failed resolution is counted and the waiter woken; its
 * access faults again and the second attempt succeeds. */
static void test_thread_failed_resolver_retries(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  fh_uffd *u = fh_uffd_create(FH_UFFD_THREAD, 0);
  assert_non_null(u);
  char *from = map_anon(PG), *to = map_anon(PG);
  fill_pattern(from, 1);
  rctx c = {.from = from};
  atomic_store(&c.fail_first, 1);
  int id = fh_uffd_range_add(u, to, PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  touch_all(to, 1);
  assert_true(page_has_pattern(to, 0));
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  fh_uffd_stats s;
  fh_uffd_get_stats(u, &s);
  assert_int_equal(s.failed, 1);
  assert_int_equal(s.faults, 2);
  fh_uffd_destroy(u);
  munmap(from, PG);
  munmap(to, PG);
}

/* ---- kernel-mode access: read() from a pipe into a missing page -------- */

static void kernel_access(fh_uffd_mode mode) {
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  if (mode == FH_UFFD_THREAD && !fh_uffd_kernel_faults(u)) {
    fh_uffd_destroy(u);
    print_message("skipped: only a user-mode-only userfaultfd here\n");
    skip();
  }
  char *to = map_anon(2 * PG);
  rctx c = {.zero = 1};
  int id = fh_uffd_range_add(u, to, 2 * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  int p[2];
  assert_int_equal(pipe(p), 0);
  char msg[64];
  memset(msg, 'k', sizeof msg);
  assert_int_equal(write(p[1], msg, sizeof msg), (ssize_t)sizeof msg);
  ssize_t n = read(p[0], to + PG, sizeof msg);
  if (mode == FH_UFFD_THREAD) {
    assert_int_equal(n, (ssize_t)sizeof msg); /* blocked, resolved, done */
    assert_memory_equal(to + PG, msg, sizeof msg);
  } else {
    assert_int_equal(n, -1); /* SIGBUS mode: no signal for the kernel */
    assert_int_equal(errno, EFAULT);
    assert_int_equal(atomic_load(&c.calls), 0);
  }
  close(p[0]);
  close(p[1]);
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  if (mode == FH_UFFD_THREAD)
    assert_int_equal(atomic_load(&c.installed), 1);
  fh_uffd_destroy(u);
  munmap(to, 2 * PG);
}

static void test_kernel_access_thread(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  kernel_access(FH_UFFD_THREAD);
}

static void test_kernel_access_sigbus_efault(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  kernel_access(FH_UFFD_SIGBUS);
}

/* ---- ending a phase ------------------------------------------------------ */

static void *touch_one(void *p) {
  consume(*(volatile char *)p);
  return NULL;
}

/* Retire must wait for a resolver still running; afterwards late faults are
 * spurious and unknown addresses are not ours. */
static void test_retire_waits_for_inflight(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  fh_uffd *u = fh_uffd_create(FH_UFFD_SIGBUS, 0);
  assert_non_null(u);
  char *from = map_anon(2 * PG), *to = map_anon(2 * PG);
  fill_pattern(from, 2);
  rctx c = {.from = from, .sleep_ms = 100};
  int id = fh_uffd_range_add(u, to, 2 * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  pthread_t t;
  pthread_create(&t, NULL, touch_one, to);
  while (!atomic_load(&c.in_resolver))
    sleep_ms(1);
  /* populate the other page, as an owner must before retiring */
  assert_int_equal(fh_uffd_copy(fh_uffd_fd(u), to + PG, from + PG, PG, 0, NULL), FH_UFFD_OK);
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  assert_int_equal(atomic_load(&c.resolver_done), 1);
  pthread_join(t, NULL);
  assert_true(page_has_pattern(to, 0));
  assert_int_equal(fh_uffd_dispatch((uintptr_t)to, 1, NULL, -1), FH_UFFD_D_SPURIOUS);
  assert_int_equal(fh_uffd_dispatch((uintptr_t)&c, 1, NULL, -1), FH_UFFD_D_NOT_OURS);
  fh_uffd_stats s;
  fh_uffd_get_stats(u, &s);
  assert_int_equal(s.spurious, 1);
  /* the same addresses again (next cycle): the retired slot is reused */
  madvise(to, 2 * PG, MADV_DONTNEED);
  c.sleep_ms = 0;
  int id2 = fh_uffd_range_add(u, to, 2 * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_int_equal(id2, id);
  touch_all(to, 2);
  assert_true(page_has_pattern(to + PG, 1));
  fh_uffd_destroy(u);
  munmap(from, 2 * PG);
  munmap(to, 2 * PG);
}

typedef struct hammer {
  char *to;
  size_t npages;
  _Atomic int stop;
  _Atomic long bad;
} hammer;

static void *hammer_main(void *p) {
  hammer *h = p;
  unsigned seed = (unsigned)(uintptr_t)&seed;
  while (!atomic_load(&h->stop)) {
    size_t i = (size_t)rand_r(&seed) % h->npages;
    uint64_t v = *(volatile uint64_t *)(h->to + i * PG);
    if (v != pattern(i, 0) && v != 0) /* 0: a page missing at retirement */
      atomic_fetch_add(&h->bad, 1);
  }
  return NULL;
}

/* Cycles of register / fault / retire with two threads faulting all the
 * time, in both modes: no crash, no hang, only correct or zero pages. */
static void retire_under_load(fh_uffd_mode mode) {
  enum { N = 256, CYCLES = 30 };
  fh_uffd *u = fh_uffd_create(mode, 0);
  assert_non_null(u);
  char *from = map_anon(N * PG), *to = map_anon(N * PG);
  fill_pattern(from, N);
  rctx c = {.from = from};
  int id = fh_uffd_range_add(u, to, N * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
  assert_true(id >= 0);
  hammer h = {.to = to, .npages = N};
  pthread_t t[2];
  pthread_create(&t[0], NULL, hammer_main, &h);
  pthread_create(&t[1], NULL, hammer_main, &h);
  for (int k = 0; k < CYCLES; k++) {
    sleep_ms(2);
    assert_int_equal(fh_uffd_range_retire(u, id), 0);
    /* Register, then drop the pages (ART's order): a read between the two
     * would otherwise leave a zero page that every COPY finds present. */
    id = fh_uffd_range_add(u, to, N * PG, FH_UFFD_REG_MISSING, resolver, &c, NULL);
    assert_true(id >= 0);
    madvise(to, N * PG, MADV_DONTNEED);
  }
  /* the last cycle ends properly: every page installed, then retire */
  assert_true(fh_uffd_copy(fh_uffd_fd(u), to, from, N * PG, 0, NULL) >= 0);
  assert_int_equal(fh_uffd_range_retire(u, id), 0);
  atomic_store(&h.stop, 1);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  assert_int_equal(atomic_load(&h.bad), 0);
  for (size_t i = 0; i < N; i++)
    assert_true(page_has_pattern(to + i * PG, i));
  fh_uffd_stats s;
  fh_uffd_get_stats(u, &s);
  print_message("  %llu faults, %llu lost races, %llu spurious\n",
                (unsigned long long)s.faults, (unsigned long long)s.existed,
                (unsigned long long)s.spurious);
  assert_true(s.faults > 0);
  fh_uffd_destroy(u);
  munmap(from, N * PG);
  munmap(to, N * PG);
}

static void test_retire_under_load_sigbus(void **st) {
  (void)st;
  UFFD_REQUIRE(FH_CAP_UFFD_SIGBUS);
  retire_under_load(FH_UFFD_SIGBUS);
}

static void test_retire_under_load_thread(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  retire_under_load(FH_UFFD_THREAD);
}

/* ---- per-thread buffers --------------------------------------------------- */

static void *buf_of_thread(void *p) {
  (void)p;
  void *b = fh_uffd_thread_buf();
  assert_ptr_equal(b, fh_uffd_thread_buf());
  memset(b, 0x11, PG);
  fh_uffd_thread_buf_prepare(); /* released at thread exit */
  return b;
}

static void test_thread_bufs(void **st) {
  (void)st;
  void *mine = fh_uffd_thread_buf();
  assert_non_null(mine);
  assert_int_equal((uintptr_t)mine % PG, 0);
  void *a, *b;
  pthread_t t1, t2;
  pthread_create(&t1, NULL, buf_of_thread, NULL);
  pthread_join(t1, &a);
  pthread_create(&t2, NULL, buf_of_thread, NULL);
  pthread_join(t2, &b);
  assert_ptr_not_equal(a, mine);
  assert_ptr_not_equal(b, mine);
  assert_ptr_equal(a, b); /* t1's page went back to the pool at exit */
  fh_uffd_thread_buf_release();
  void *again = fh_uffd_thread_buf();
  assert_non_null(again);
  /* 300 threads: more than the pool holds, the rest map their own page */
  for (int i = 0; i < 300; i++) {
    pthread_t t;
    pthread_create(&t, NULL, buf_of_thread, NULL);
    pthread_join(t, NULL);
  }
}

/* Thread mode with every ioctl failing (heap/sys.h): the resolver cannot
 * COPY or WAKE, so the page is put in place with mremap and the faulting
 * thread keeps sleeping in the kernel; retiring cannot unregister either.
 * fh_uffd_reopen closes the fd, which must wake it onto its page; the new
 * fd's UFFDIO_API fails as well, and a later reopen gives the context a
 * working fd again.  In a child, bounded by alarm(). */
static _Atomic int reopen_faulted;
static int resolve_nothing(void *arg, const fh_uffd_fault *f) {
  (void)arg, (void)f;
  atomic_store(&reopen_faulted, 1);
  return FH_UFFD_RESOLVED; /* as if installed: no wake comes */
}
static void *read_page(void *p) {
  return (void *)(uintptr_t) * (volatile char *)p;
}
static void test_reopen_wakes_waiters(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    alarm(10);
    fh_uffd *u = fh_uffd_create(FH_UFFD_THREAD, 0);
    char *to = map_anon(PG);
    if (!u || fh_uffd_range_add(u, to, PG, FH_UFFD_REG_MISSING, resolve_nothing, NULL,
                                NULL) < 0)
      _exit(3);
    pthread_t t;
    pthread_create(&t, NULL, read_page, to);
    while (!atomic_load(&reopen_faulted)) sleep_ms(1);
    sys_fault_arm(SYS_UFFD_IOCTL, 1, 1, ENOMEM);
    char *page = map_anon(PG);
    page[0] = 42;
    if (sys_mremap(page, PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED) _exit(4);
    sleep_ms(20); /* the reader still sleeps: nothing woke it */
    if (fh_uffd_wake(fh_uffd_fd(u), to, PG) == 0) _exit(5);
    fh_uffd_ranges_retire_all(u); /* UNREGISTER fails */
    /* The new fd's UFFDIO_API fails too: no fd, but the old one is closed. */
    if (fh_uffd_reopen(u) == 0 || fh_uffd_fd(u) != -1) _exit(6);
    void *got;
    pthread_join(t, &got);
    if ((uintptr_t)got != 42) _exit(7);
    sys_fault_disarm();
    if (fh_uffd_reopen(u) != 0) _exit(9); /* later, it works again */
    int fd2 = fh_uffd_fd(u);
    char *again = map_anon(PG);
    if (fd2 < 0 || fh_uffd_register(fd2, again, PG, FH_UFFD_REG_MISSING, NULL) != 0) _exit(8);
    fh_uffd_destroy(u);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_create_destroy_thread_mode(void **st) {
  (void)st;
  UFFD_REQUIRE(0);
  for (int i = 0; i < 20; i++) {
    fh_uffd *u = fh_uffd_create(FH_UFFD_THREAD, FH_UFFD_WANT_MOVE);
    assert_non_null(u);
    assert_true(fh_uffd_fd(u) >= 0);
    if (fh_capabilities() & FH_CAP_UFFD_MOVE)
      assert_true(fh_uffd_has_move(u));
    fh_uffd_destroy(u);
  }
  assert_null(fh_uffd_create((fh_uffd_mode)7, 0));
  assert_int_equal(errno, EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigbus_copy),
      cmocka_unit_test(test_sigbus_zeropage),
      cmocka_unit_test(test_thread_copy),
      cmocka_unit_test(test_thread_zeropage),
      cmocka_unit_test(test_same_page_race_sigbus),
      cmocka_unit_test(test_same_page_race_thread),
      cmocka_unit_test(test_loser_wakes_waiters),
      cmocka_unit_test(test_background_race_sigbus),
      cmocka_unit_test(test_background_race_thread),
      cmocka_unit_test(test_sigbus_chains),
      cmocka_unit_test(test_sigbus_failed_resolver_kills),
      cmocka_unit_test(test_thread_failed_resolver_retries),
      cmocka_unit_test(test_kernel_access_thread),
      cmocka_unit_test(test_kernel_access_sigbus_efault),
      cmocka_unit_test(test_retire_waits_for_inflight),
      cmocka_unit_test(test_retire_under_load_sigbus),
      cmocka_unit_test(test_retire_under_load_thread),
      cmocka_unit_test(test_thread_bufs),
      cmocka_unit_test(test_create_destroy_thread_mode),
      cmocka_unit_test(test_reopen_wakes_waiters),
  };
  return cmocka_run_group_tests_name("uffd_faults", tests, NULL, NULL);
}
