/* fhscheme, SRFI-18 threads: part of scheme.c's one translation unit
 * (included there, never compiled alone).
 *
 * Each Scheme thread is an OS thread attached to the heap as a mutator of
 * its own (fh_thread_attach: its own allocation buffer, its stack scanned
 * conservatively) with its own interpreter state: the dynamic state
 * (winders, handlers, the value in flight and the top-level catch) and the
 * current ports are thread-locals, each registered as a root by its
 * thread.  Shared: the global variables (symbol value cells: a store is one
 * barriered word, so racing set!s are each atomic), the symbol table and
 * the other interpreter tables (under the global lock, see glock_acquire),
 * compiled code (only the main thread compiles; it is immutable after).
 * Every wait (join, mutex, condition variable, sleep) is a blocking region,
 * so collections proceed meanwhile; closure entry polls a safepoint, so a
 * thread looping without allocating does not hold a collection up.
 *
 * Objects: thread [thunk, name, result, exception, specific, in, out, err,
 * C side]; mutex [name, specific, owner, C side]; condition variable
 * [name, specific, C side].  The C sides are malloc'd (odd-tagged words the
 * trace skips): a thread's is freed by the thread itself after its join
 * state is no longer needed... never, in fact: a thread's C side lives as
 * long as the process (a few dozen bytes; a thread object may be joined at
 * any later time); mutexes' and condition variables' are freed by
 * finalizers when their object dies. */

typedef struct SThread {
  pthread_mutex_t m;
  pthread_cond_t c;
  int state; /* 0 new, 1 running, 2 done */
  V obj;     /* a root while the thread starts: the creator's handoff */
} SThread;
typedef struct SSync {
  int kind; /* K_MUTEX or K_CONDVAR */
  pthread_mutex_t m;
  pthread_cond_t c;
} SSync;

enum { TH_THUNK, TH_NAME, TH_RESULT, TH_EXC, TH_SPECIFIC, TH_IN, TH_OUT, TH_ERR, TH_C, TH_LEN };
enum { MX_NAME, MX_SPECIFIC, MX_OWNER, MX_C, MX_LEN };
enum { CV_NAME, CV_SPECIFIC, CV_C, CV_LEN };
#define CSIDE(v, i) ((void *)(OBJ(v)[1 + (i)] & ~(V)1))

static _Thread_local V self_thread; /* this thread's object (#f: the main thread) */
static V main_thread;
static long threads_live; /* started and not finished (under glock) */

static void thread_roots(int add) {
  V *slots[] = {&winders, &handlers, &throw_val, &cur_in, &cur_out, &cur_err, &self_thread};
  for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
    if (add) add_root(slots[i]);
    else remove_root(slots[i]);
}

static void free_sync(intptr_t data) {
  SSync *s = (SSync *)(data & ~(intptr_t)3);
  pthread_mutex_destroy(&s->m);
  pthread_cond_destroy(&s->c);
  free(s);
}

static V check_kind(V v, int kind, const char *what) {
  if (!IS(v, kind)) err(what, v);
  return v;
}

PRIM(p_make_thread) {
  V th = mkobj(K_THREAD, TH_LEN);
  VSET(th, TH_THUNK, argv[0]);
  VSET(th, TH_NAME, argc > 1 ? argv[1] : FALSE_V);
  VSET(th, TH_RESULT, UNSPEC);
  VSET(th, TH_EXC, FALSE_V);
  VSET(th, TH_SPECIFIC, UNSPEC);
  VSET(th, TH_IN, cur_in);
  VSET(th, TH_OUT, cur_out);
  VSET(th, TH_ERR, cur_err);
  SThread *c = calloc(1, sizeof *c);
  if (!c) oom();
  pthread_mutex_init(&c->m, NULL);
  pthread_cond_init(&c->c, NULL);
  OBJ(th)[1 + TH_C] = (V)c | 1;
  return th;
}

static void *thread_main(void *arg) {
  SThread *c = arg;
  heap_attach_thread();
  thread_roots(1);
  self_thread = c->obj; /* read as a mutator: the root kept it up to date */
  remove_root(&c->obj);
  c->obj = 0;
  winders = handlers = NIL;
  throw_val = UNSPEC;
  cur_in = VREF(self_thread, TH_IN);
  cur_out = VREF(self_thread, TH_OUT);
  cur_err = VREF(self_thread, TH_ERR);
  Catch k;
  toplevel_catch = &k;
  if (setjmp(k.jb) == 0) {
    V r = apply_proc(VREF(self_thread, TH_THUNK), 0, NULL);
    VSET(self_thread, TH_RESULT, r);
  } else {
    V e = throw_val;
    VSET(self_thread, TH_EXC, cons(e, NIL)); /* an uncaught exception */
  }
  toplevel_catch = NULL;
  heap_blocking(1);
  pthread_mutex_lock(&c->m);
  c->state = 2;
  pthread_cond_broadcast(&c->c);
  pthread_mutex_unlock(&c->m);
  heap_blocking(0);
  glock_acquire();
  threads_live--;
  glock_release();
  thread_roots(0);
  self_thread = 0;
  heap_detach_thread();
  return NULL;
}

PRIM(p_thread_start) {
  UNUSED;
  V th = check_kind(argv[0], K_THREAD, "thread-start!: not a thread");
  SThread *c = CSIDE(th, TH_C);
  if (c->state != 0) err("thread-start!: thread already started", th);
  c->state = 1;
  /* From now on the shared tables are locked, and closure entry polls.
   * Set once, before the first thread starts (pthread_create orders it
   * for every thread): set again at each start, the stores raced with
   * the running threads' reads. */
  if (!threaded) threaded = 1;
  if (!polling) polling = 1;
  glock_acquire();
  threads_live++;
  glock_release();
  c->obj = th;
  add_root(&c->obj);
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, (size_t)256 << 20); /* address space until touched */
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_t tid;
  int rc = pthread_create(&tid, &at, thread_main, c);
  pthread_attr_destroy(&at);
  if (rc != 0) {
    remove_root(&c->obj);
    c->state = 0;
    glock_acquire();
    threads_live--;
    glock_release();
    err("thread-start!: cannot create a thread", th);
  }
  return th;
}

static double seconds_arg(V v) {
  if (ISFIX(v)) return (double)FIXV(v);
  if (ISFLO(v)) return FLO(v);
  err("not a number of seconds", v);
}
static void deadline_after(struct timespec *ts, double secs) {
  clock_gettime(CLOCK_REALTIME, ts);
  double ns = ts->tv_nsec + (secs > 0 ? secs : 0) * 1e9;
  ts->tv_sec += (time_t)(ns / 1e9);
  ts->tv_nsec = (long)(ns - (double)(time_t)(ns / 1e9) * 1e9);
}

/* (thread-join! thread [timeout [timeout-val]]) */
PRIM(p_thread_join) {
  V th = check_kind(argv[0], K_THREAD, "thread-join!: not a thread");
  SThread *c = CSIDE(th, TH_C);
  if (c->state == 0) err("thread-join!: thread not started", th);
  int timed = argc > 1 && argv[1] != FALSE_V, timedout = 0;
  struct timespec ts;
  if (timed) deadline_after(&ts, seconds_arg(argv[1]));
  heap_blocking(1);
  pthread_mutex_lock(&c->m);
  while (c->state != 2 && !timedout)
    if (timed) timedout = pthread_cond_timedwait(&c->c, &c->m, &ts) != 0 && c->state != 2;
    else pthread_cond_wait(&c->c, &c->m);
  pthread_mutex_unlock(&c->m);
  heap_blocking(0);
  if (timedout) {
    if (argc > 2) return argv[2];
    err("thread-join!: timed out", th);
  }
  V exc = VREF(th, TH_EXC);
  if (exc != FALSE_V) do_raise(mkerror("uncaught exception in joined thread", exc), 0);
  return VREF(th, TH_RESULT);
}

PRIM(p_current_thread) { UNUSED; return self_thread ? self_thread : main_thread; }
PRIM(p_threadp) { UNUSED; return BOOL(IS(argv[0], K_THREAD)); }
PRIM(p_thread_name) { UNUSED; return VREF(check_kind(argv[0], K_THREAD, "not a thread"), TH_NAME); }
PRIM(p_thread_specific) { UNUSED; return VREF(check_kind(argv[0], K_THREAD, "not a thread"), TH_SPECIFIC); }
PRIM(p_thread_specific_set) {
  UNUSED;
  VSET(check_kind(argv[0], K_THREAD, "not a thread"), TH_SPECIFIC, argv[1]);
  return UNSPEC;
}
PRIM(p_thread_yield) {
  UNUSED;
  heap_blocking(1);
  sched_yield();
  heap_blocking(0);
  return UNSPEC;
}
PRIM(p_thread_sleep) {
  UNUSED;
  double s = seconds_arg(argv[0]);
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  heap_blocking(1);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  heap_blocking(0);
  return UNSPEC;
}

static V make_sync(int kind, int len, int cslot, V name) {
  V o = mkobj(kind, (size_t)len);
  VSET(o, 0, name);
  VSET(o, 1, UNSPEC);
  if (kind == K_MUTEX) VSET(o, MX_OWNER, FALSE_V);
  SSync *s = calloc(1, sizeof *s);
  if (!s) oom();
  s->kind = kind;
  pthread_mutex_init(&s->m, NULL);
  pthread_cond_init(&s->c, NULL);
  OBJ(o)[1 + cslot] = (V)s | 1;
  attach_finalizer(o, (intptr_t)s | 2); /* freed when the object dies */
  return o;
}
PRIM(p_make_mutex) { return make_sync(K_MUTEX, MX_LEN, MX_C, argc ? argv[0] : FALSE_V); }
PRIM(p_make_condvar) { return make_sync(K_CONDVAR, CV_LEN, CV_C, argc ? argv[0] : FALSE_V); }
PRIM(p_mutexp) { UNUSED; return BOOL(IS(argv[0], K_MUTEX)); }
PRIM(p_condvarp) { UNUSED; return BOOL(IS(argv[0], K_CONDVAR)); }
PRIM(p_mutex_name) { UNUSED; return VREF(check_kind(argv[0], K_MUTEX, "not a mutex"), MX_NAME); }

/* (mutex-lock! m [timeout]): #t, or #f on timeout. */
PRIM(p_mutex_lock) {
  V m = check_kind(argv[0], K_MUTEX, "mutex-lock!: not a mutex");
  SSync *s = CSIDE(m, MX_C);
  int ok = 1;
  if (pthread_mutex_trylock(&s->m) != 0) {
    int timed = argc > 1 && argv[1] != FALSE_V;
    struct timespec ts;
    if (timed) deadline_after(&ts, seconds_arg(argv[1]));
    heap_blocking(1);
    ok = timed ? pthread_mutex_timedlock(&s->m, &ts) == 0 : pthread_mutex_lock(&s->m) == 0;
    heap_blocking(0);
  }
  if (ok) VSET(m, MX_OWNER, p_current_thread(0, NULL));
  return BOOL(ok);
}
/* (mutex-unlock! m [cv [timeout]]): with cv, unlocks and waits on it (not
 * relocking, as SRFI-18 says); #f on timeout. */
PRIM(p_mutex_unlock) {
  V m = check_kind(argv[0], K_MUTEX, "mutex-unlock!: not a mutex");
  SSync *s = CSIDE(m, MX_C);
  VSET(m, MX_OWNER, FALSE_V);
  if (argc < 2 || argv[1] == FALSE_V) {
    pthread_mutex_unlock(&s->m);
    return TRUE_V;
  }
  V cv = check_kind(argv[1], K_CONDVAR, "mutex-unlock!: not a condition variable");
  SSync *c = CSIDE(cv, CV_C);
  int timed = argc > 2 && argv[2] != FALSE_V, ok = 1;
  struct timespec ts;
  if (timed) deadline_after(&ts, seconds_arg(argv[2]));
  heap_blocking(1);
  if (timed) ok = pthread_cond_timedwait(&c->c, &s->m, &ts) == 0;
  else pthread_cond_wait(&c->c, &s->m);
  pthread_mutex_unlock(&s->m);
  heap_blocking(0);
  return BOOL(ok);
}
/* The waiters use the mutex they passed to mutex-unlock!, not this one:
 * pthread condition variables need no lock to signal. */
PRIM(p_condvar_signal) {
  UNUSED;
  pthread_cond_signal(&((SSync *)CSIDE(check_kind(argv[0], K_CONDVAR, "not a condition variable"), CV_C))->c);
  return UNSPEC;
}
PRIM(p_condvar_broadcast) {
  UNUSED;
  pthread_cond_broadcast(&((SSync *)CSIDE(check_kind(argv[0], K_CONDVAR, "not a condition variable"), CV_C))->c);
  return UNSPEC;
}
