/* The heap's GC worker threads (gc_pool.h). */
#include "heap/gc_pool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap/sys.h"

enum { TASK_NONE, TASK_ASSIGNED, TASK_DONE, TASK_EXIT };

struct gc_pool_thread {
  pthread_t tid;
  pthread_cond_t cv; /* state changes, both ways */
  int state;         /* TASK_*, under the pool's lock */
  int detached;
  void *(*fn)(void *);
  void *arg;
  char name[16];
  gc_pool *pool;
  gc_pool_thread *next_all, *next_idle;
};

static uint64_t tv_ns(struct timeval tv) {
  return (uint64_t)tv.tv_sec * 1000000000u + (uint64_t)tv.tv_usec * 1000u;
}

/* A failing getrusage (it cannot, for RUSAGE_THREAD) costs the figures
 * only: the charge is then skipped. */
int gc_pool_usage_begin(struct rusage *before) { return getrusage(RUSAGE_THREAD, before); }

void gc_pool_charge(gc_pool *p, const struct rusage *before) {
  struct rusage after;
  if (getrusage(RUSAGE_THREAD, &after) != 0) return;
  atomic_fetch_add_explicit(&p->user_ns, tv_ns(after.ru_utime) - tv_ns(before->ru_utime),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&p->sys_ns, tv_ns(after.ru_stime) - tv_ns(before->ru_stime),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&p->minflt, (uint64_t)(after.ru_minflt - before->ru_minflt),
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&p->majflt, (uint64_t)(after.ru_majflt - before->ru_majflt),
                            memory_order_relaxed);
}

static void *pool_thread_main(void *arg) {
  gc_pool_thread *w = arg;
  gc_pool *p = w->pool;
  char named[sizeof w->name] = ""; /* the name this thread carries */
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (w->state == TASK_NONE || w->state == TASK_DONE) pthread_cond_wait(&w->cv, &p->lock);
    if (w->state == TASK_EXIT) break;
    void *(*fn)(void *) = w->fn;
    void *fn_arg = w->arg;
    pthread_mutex_unlock(&p->lock);
    /* Cosmetic, so failure is harmless; a system call (prctl), so only
     * when the task's name differs from the last one's. */
    if (strcmp(named, w->name) != 0) {
      pthread_setname_np(pthread_self(), w->name);
      memcpy(named, w->name, sizeof named);
    }
    struct rusage before;
    int measured = gc_pool_usage_begin(&before) == 0;
    fn(fn_arg);
    if (measured) gc_pool_charge(p, &before);
    pthread_mutex_lock(&p->lock);
    if (w->detached) {
      w->state = TASK_NONE;
      w->next_idle = p->idle;
      p->idle = w;
      if (--p->busy == 0) pthread_cond_broadcast(&p->idle_cv);
    } else {
      w->state = TASK_DONE; /* gc_pool_join makes it idle */
      pthread_cond_broadcast(&w->cv);
    }
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

void gc_pool_init(gc_pool *p) {
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->idle_cv, NULL);
}

/* A new parked thread, or NULL with an error number in *err.  Pool lock
 * held. */
static gc_pool_thread *spawn(gc_pool *p, int *err) {
  gc_pool_thread *w = calloc(1, sizeof *w);
  if (!w) {
    *err = ENOMEM;
    return NULL;
  }
  w->pool = p;
  pthread_cond_init(&w->cv, NULL);
  /* Asynchronous signals are for the embedder's threads (the new thread
   * inherits this mask); synchronous ones cannot be blocked usefully, and
   * SIGBUS carries userfaultfd faults in SIGBUS mode. */
  sigset_t all, old;
  sigfillset(&all);
  static const int synchronous[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++)
    sigdelset(&all, synchronous[i]);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *err = sys_thread_create(&w->tid, NULL, pool_thread_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (*err) {
    pthread_cond_destroy(&w->cv);
    free(w);
    return NULL;
  }
  w->next_all = p->all;
  p->all = w;
  p->nthreads++;
  p->started_total++;
  return w;
}

int gc_pool_start(gc_pool *p, gc_task *task, const char *name, void *(*fn)(void *), void *arg) {
  pthread_mutex_lock(&p->lock);
  gc_pool_thread *w = p->idle;
  if (w)
    p->idle = w->next_idle;
  else {
    int err;
    if (!(w = spawn(p, &err))) {
      pthread_mutex_unlock(&p->lock);
      return err;
    }
  }
  w->fn = fn;
  w->arg = arg;
  w->detached = task == NULL;
  snprintf(w->name, sizeof w->name, "%s", name);
  w->state = TASK_ASSIGNED;
  p->busy++;
  p->tasks_total++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&p->lock);
  if (task) *task = w;
  return 0;
}

void gc_pool_join(gc_pool *p, gc_task w) {
  pthread_mutex_lock(&p->lock);
  while (w->state != TASK_DONE) pthread_cond_wait(&w->cv, &p->lock);
  w->state = TASK_NONE;
  w->next_idle = p->idle;
  p->idle = w;
  if (--p->busy == 0) pthread_cond_broadcast(&p->idle_cv);
  pthread_mutex_unlock(&p->lock);
}

void gc_pool_end_threads(gc_pool *p) {
  pthread_mutex_lock(&p->lock);
  while (p->busy) pthread_cond_wait(&p->idle_cv, &p->lock);
  gc_pool_thread *all = p->all;
  for (gc_pool_thread *w = all; w; w = w->next_all) {
    w->state = TASK_EXIT;
    pthread_cond_broadcast(&w->cv);
  }
  p->all = p->idle = NULL;
  p->nthreads = 0;
  pthread_mutex_unlock(&p->lock);
  while (all) {
    gc_pool_thread *next = all->next_all;
    pthread_join(all->tid, NULL);
    pthread_cond_destroy(&all->cv);
    free(all);
    all = next;
  }
}

void gc_pool_destroy(gc_pool *p) {
  gc_pool_end_threads(p);
  pthread_cond_destroy(&p->idle_cv);
  pthread_mutex_destroy(&p->lock);
}

void gc_pool_before_fork(gc_pool *p) { pthread_mutex_lock(&p->lock); }

void gc_pool_after_fork_parent(gc_pool *p) { pthread_mutex_unlock(&p->lock); }

void gc_pool_after_fork_child(gc_pool *p) {
  /* The threads are the parent's; their records are only memory here (the
   * stacks of threads that do not exist in the child stay mapped: a few
   * MiB of address space at most, touched by nobody). */
  gc_pool_thread *w = p->all;
  while (w) {
    gc_pool_thread *next = w->next_all;
    free(w);
    w = next;
  }
  uint64_t user = atomic_load(&p->user_ns), sys = atomic_load(&p->sys_ns);
  uint64_t minflt = atomic_load(&p->minflt), majflt = atomic_load(&p->majflt);
  gc_pool_init(p); /* the lock, held by this thread in the parent's image, starts free */
  atomic_store(&p->user_ns, user);
  atomic_store(&p->sys_ns, sys);
  atomic_store(&p->minflt, minflt);
  atomic_store(&p->majflt, majflt);
}
