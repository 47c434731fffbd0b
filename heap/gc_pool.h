/* The heap's GC worker threads: one pool per heap, threads started on
 * first demand and kept parked between collections, so that a collection
 * costs no thread creation (issue 17: a stop-the-world mark-compact run of
 * an mt-gcbench-shaped program started ~92 threads, one or more a cycle).
 *
 * Every thread the collectors used to create for one job (parallel
 * markers, page builders, the concurrent compactor's worker and releaser,
 * mark-sweep's sweeper, the background homogeneous compaction) is a task
 * run by a pool thread instead.  gc_pool_start/gc_pool_join have
 * pthread_create/pthread_join's contract, so a call site keeps its shape:
 * start may fail (0 or an error number, as pthread_create: the caller
 * falls back to doing the work itself or with fewer helpers), and a
 * joinable task must be joined exactly once.
 *
 * The pool grows to the largest number of tasks that ever ran at once and
 * never shrinks while the heap lives: at most gc_threads markers or
 * builders plus the few long-lived tasks, all parked on a condition
 * variable when idle.  fh_heap_destroy ends them (gc_pool_destroy).
 *
 * Pool threads block the asynchronous signals (an embedder's SIGPROF or
 * SIGINT is for its own threads); the synchronous ones stay open, since a
 * userfaultfd registration in SIGBUS mode delivers faults as SIGBUS.
 *
 * CPU accounting: each task measures its own thread's user and system
 * time and minor/major faults (getrusage RUSAGE_THREAD, two calls a task)
 * and adds them to the pool's totals, which fh_get_stats reports together
 * with the collecting thread's pause (collectors/driver.c).
 *
 * Fork: a child has none of the pool's threads.  fork.c holds the pool's
 * lock across fork() (no thread is inside it then), and the child forgets
 * every thread (gc_pool_after_fork_child): the next task starts a new one. */
#ifndef FH_GC_POOL_H_
#define FH_GC_POOL_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/resource.h>

typedef struct gc_pool_thread gc_pool_thread;

typedef struct gc_pool {
  pthread_mutex_t lock;
  pthread_cond_t idle_cv;  /* busy fell to 0 (gc_pool_destroy waits for it) */
  gc_pool_thread *all;     /* every live pool thread */
  gc_pool_thread *idle;    /* those waiting for a task */
  unsigned nthreads, busy; /* under lock */
  unsigned started_total;  /* threads ever started (fh_dump, tests) */
  unsigned long tasks_total; /* tasks ever handed out (tests), under lock */
  /* CPU and faults of the tasks that ended, summed (relaxed atomics: read
   * for statistics only). */
  _Atomic uint64_t user_ns, sys_ns, minflt, majflt;
} gc_pool;

/* A running task; joinable ones are given to gc_pool_join. */
typedef gc_pool_thread *gc_task;

void gc_pool_init(gc_pool *p);
/* Wait for every task to end, then end the threads; the next task starts
 * a new one.  fh_prefork does this so that the process forks with only
 * its mutators, as Android's zygote does.  No new task may be started
 * meanwhile. */
void gc_pool_end_threads(gc_pool *p);
/* gc_pool_end_threads, then free the pool. */
void gc_pool_destroy(gc_pool *p);

/* Run fn(arg) on a pool thread, starting one when none is idle.  `name`
 * (at most 15 characters) names the thread for debuggers while it runs.
 * 0, or an error number (errno untouched) when no thread could be had.
 * With task NULL the task is detached: nobody joins it. */
int gc_pool_start(gc_pool *p, gc_task *task, const char *name, void *(*fn)(void *), void *arg);
/* Wait for a joinable task's fn to return; the thread goes back to idle. */
void gc_pool_join(gc_pool *p, gc_task task);

/* Charge the calling thread's CPU time and faults since `before` (from
 * gc_pool_usage_begin, 0 on success) to the pool's totals: pool threads do
 * it around each task, the collecting thread around its pause. */
int gc_pool_usage_begin(struct rusage *before);
void gc_pool_charge(gc_pool *p, const struct rusage *before);

/* fork(): hold the lock across it; the parent releases it, the child
 * forgets the threads (they do not exist there) and reinitialises. */
void gc_pool_before_fork(gc_pool *p);
void gc_pool_after_fork_parent(gc_pool *p);
void gc_pool_after_fork_child(gc_pool *p);

#endif
