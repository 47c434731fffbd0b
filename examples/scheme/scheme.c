/* fhscheme: a small Scheme on faultheap's public API.
 *
 * Source is read into heap data, compiled to a tree of nodes (C memory,
 * never moved) with lexical addresses (depth, index) for locals and symbol
 * cells for globals, and run by one evaluator function whose every
 * call in tail position loops instead of recursing (proper tail calls).
 * Environments are heap frames [header, parent, slots...]; closures are
 * [header, lambda, env].  Constants the code holds (quoted data, symbols)
 * are copied into the non-moving space and kept alive by the constant pool,
 * a root, so nodes may hold them directly.
 *
 * Roots: stack_roots=conservative.  Every value in a C local is found by
 * the stack scan, so the evaluator, the compiler and the primitives never
 * push root slots.  C globals that hold values are registered with
 * add_root. */
#include "scheme.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sched.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Objects */

/* Compiled code lives in the heap (non-moving space), so a heap image
 * holds it and a booted image runs it without recompiling.  Node and
 * Lambda are reference arrays shaped as C structs: their integer fields
 * share words whose lowest byte is 1 (odd: the trace skips them and the
 * image saver sees no native pointer); every other word is a reference or
 * 0.  Primitives are heap objects [hdr, fixnum index into pdefs]: no
 * function pointer is ever stored in the heap. */
typedef struct Node Node;
typedef struct Lambda {
  V hdr;
  uint8_t tag1, rest, noescape, pad1; /* noescape: the body creates no closure: its frame may live on the C stack */
  int32_t nreq;
  int32_t tag2, fsize;
  Node *body;
  V name;
} Lambda;

typedef V (*PrimFn)(int argc, V *argv);
typedef struct Prim {
  V hdr;
  V idx; /* fixnum: index into pdefs */
} Prim;
struct pdef {
  const char *name;
  PrimFn fn;
  int min, max; /* max < 0: variadic */
  int inl;      /* inline opcode for the evaluator, 0 if none */
  Prim **save;
};
static const struct pdef *pinfo(const Prim *p); /* parts/driver.c */

static _Noreturn void err(const char *msg, V irritant);
static V intern(const char *s);

V cons(V a, V d) {
  V *p = alloc_pair();
  p[0] = a;
  p[1] = d;
  return (V)p | 2;
}

static V mkflo(double d) {
  double *p = alloc_flo();
  *p = d;
  return (V)p | 4;
}

static V mkvec(size_t n, V fill) {
  V *p = alloc_refs(1 + n);
  p[0] = MKHDR(K_VECTOR, n);
  if (fill) for (size_t i = 0; i < n; i++) p[1 + i] = fill;
  return (V)p;
}

static V mkobj(int kind, size_t n) {
  V *p = alloc_refs(1 + n);
  p[0] = MKHDR(kind, n);
  return (V)p;
}

static V mkstr(const char *s, size_t n) {
  V *p = alloc_bytes(sizeof(V) + n + 1);
  p[0] = MKHDR(K_STRING, n);
  if (s) memcpy(&p[1], s, n);
  return (V)p;
}

static V mkbv(size_t n) {
  V *p = alloc_bytes(sizeof(V) + n);
  p[0] = MKHDR(K_BYTEVECTOR, n);
  return (V)p;
}

#define VREF(v, i) (OBJ(v)[1 + (i)])
#define VSET(v, i, x) WB(OBJ(v), &OBJ(v)[1 + (i)], (x))
#define SETCAR(p, x) WB(PP(p), &CAR(p), (x))
#define SETCDR(p, x) WB(PP(p), &CDR(p), (x))

/* Symbols: [hdr, name string, global value, plist-free]; non-moving. */
#define SYMNAME(s) (OBJ(s)[1])
#define SYMVAL(s) (OBJ(s)[2])

/* One lock for the interpreter's shared tables (the symbol table, the
 * guardians, the finalized queue, eq?-hashtables), taken only once a second
 * Scheme thread has been started.  Its holder may allocate, and so need
 * every other mutator at a safepoint: a contended acquisition waits in a
 * blocking region.  Nothing raises while holding it. */
static pthread_mutex_t glock = PTHREAD_MUTEX_INITIALIZER;
static int threaded; /* set before the first thread starts, never cleared */
/* Closure entry (every loop) polls a safepoint once another thread may
 * wait for this one: a second Scheme thread, or the heap's concurrent
 * marker, whose remark pause waits for every mutator to stop.  Alone and
 * without one, allocation is the only trigger, and gc_stress would count
 * every call as a poll.  A mutator that polled only when it allocated
 * kept maze's remark pauses waiting for it for up to 1.1 ms (fhbench
 * scheme with concurrent_mark=1: its pauses 1.7 -> 0.7 ms). */
static int polling;
static void glock_acquire(void) {
  if (!threaded) return;
  if (pthread_mutex_trylock(&glock) != 0) {
    heap_blocking(1);
    pthread_mutex_lock(&glock);
    heap_blocking(0);
  }
}
static void glock_release(void) {
  if (threaded) pthread_mutex_unlock(&glock);
}

static V intern_n(const char *s, size_t n) {
  glock_acquire();
  V sym = sym_lookup(s, n);
  if (!sym) {
    V str = mkstr(s, n);
    V *p = alloc_nonmoving(NM_REFS, 3);
    p[0] = MKHDR(K_SYMBOL, 2);
    WB(p, &p[1], str);
    sym = (V)p;
    sym_insert(sym);
  }
  glock_release();
  return sym;
}
static V intern(const char *s) { return intern_n(s, strlen(s)); }

static int gensym_counter;

/* The constant pool: a growing heap vector, a root. */
static V cpool;
static size_t cpool_n;
static void keep(V v) {
  if (!(ISPAIR(v) || ISOBJ(v) || ISFLO(v))) return;
  if (cpool_n == LEN(cpool)) {
    V nv = mkvec(LEN(cpool) * 2, NIL);
    for (size_t i = 0; i < cpool_n; i++) VSET(nv, i, VREF(cpool, i));
    cpool = nv;
  }
  VSET(cpool, cpool_n, v);
  cpool_n++;
}

/* ------------------------------------------------------------------ */
/* Ports: a heap object [hdr, fixnum-encoded C pointer] over a Port. */

typedef struct Port {
  FILE *f;
  char *buf;
  size_t len, pos, cap;
  int input, isstring, closed;
  int peeked; /* unused */
  int pb[4], npb; /* pushed-back characters */
} Port;

/* Per Scheme thread (each registers its own as roots: parts/threads.c). */
static _Thread_local V cur_in, cur_out, cur_err;

static V mkport(Port *pt) {
  V p = mkobj(K_PORT, 1);
  OBJ(p)[1] = (V)pt | 1; /* malloc'd, 8-aligned: the odd bit keeps it off the trace */
  pt->peeked = -2;
  if (pt->f != stdin && pt->f != stdout && pt->f != stderr)
    attach_finalizer(p, (intptr_t)pt); /* closed when unreachable */
  return p;
}
#define PORT(v) ((Port *)(OBJ(v)[1] & ~(V)1))

static int port_getc(Port *p) {
  if (p->npb) return p->pb[--p->npb];
  if (p->closed) return EOF;
  if (p->isstring) return p->pos < p->len ? (unsigned char)p->buf[p->pos++] : EOF;
  return getc(p->f);
}
static int port_peekc(Port *p) {
  if (!p->npb) {
    int c = port_getc(p);
    p->pb[p->npb++] = c;
  }
  return p->pb[p->npb - 1];
}
static void port_unget(Port *p, int c) { p->pb[p->npb++] = c; }
static void port_write(Port *p, const char *s, size_t n) {
  if (p->closed) err("write to a closed port", FALSE_V);
  if (p->isstring) {
    if (p->len + n > p->cap) {
      p->cap = (p->len + n) * 2 + 64;
      p->buf = realloc(p->buf, p->cap);
      if (!p->buf) oom();
    }
    memcpy(p->buf + p->len, s, n);
    p->len += n;
  } else {
    fwrite(s, 1, n, p->f);
  }
}
static void port_puts(Port *p, const char *s) { port_write(p, s, strlen(s)); }
static void port_close(Port *p) {
  if (p->closed) return;
  p->closed = 1;
  if (p->f && p->f != stdin && p->f != stdout && p->f != stderr) fclose(p->f);
  p->f = NULL;
}
static long ports_finalized;

/* ------------------------------------------------------------------ */
/* Errors, handlers, dynamic-wind, escapes */

typedef struct Catch {
  jmp_buf jb;
  struct Catch *prev;
} Catch;

/* The dynamic state, per Scheme thread. */
static _Thread_local V winders = NIL;   /* list of (before . after) */
static _Thread_local V handlers = NIL;  /* list of handler procedures or guard markers */
static _Thread_local V throw_val;       /* value being passed by a longjmp */
static _Thread_local Catch *toplevel_catch;

static V apply_proc(V f, int argc, V *argv);
static void print(V v, Port *p, int write);

static void unwind_to(V target) {
  /* Run the after thunks of the winders not shared with target. */
  size_t n1 = 0, n2 = 0;
  for (V w = winders; w != NIL; w = CDR(w)) n1++;
  for (V w = target; w != NIL; w = CDR(w)) n2++;
  V a = winders, b = target;
  while (n1 > n2) { a = CDR(a); n1--; }
  while (n2 > n1) { b = CDR(b); n2--; }
  while (a != b) { a = CDR(a); b = CDR(b); }
  V common = a;
  while (winders != common) {
    V w = CAR(winders);
    winders = CDR(winders);
    apply_proc(CDR(w), 0, NULL);
  }
  /* Rewinding into target's befores (re-entry) does not happen with
   * escape-only continuations. */
}

static V mkerror(const char *msg, V irritants) {
  V e = mkobj(K_ERROR, 2);
  VSET(e, 0, mkstr(msg, strlen(msg)));
  VSET(e, 1, irritants);
  return e;
}

static _Noreturn void do_raise(V obj, int continuable);

static _Noreturn void err(const char *msg, V irritant) {
  do_raise(mkerror(msg, irritant == FALSE_V ? NIL : cons(irritant, NIL)), 0);
}

_Noreturn void oom(void) {
  fprintf(stderr, "fhscheme: out of memory\n");
  exit(71);
}

/* A guard marker in the handler list: [hdr K_CONT-like] holds a Catch*. */
static V mkmarker(Catch *c, V wind) {
  V m = mkobj(K_CONT, 4);
  OBJ(m)[1] = (V)c | 1;
  VSET(m, 1, wind);
  VSET(m, 2, handlers);
  OBJ(m)[4] = FIX(1); /* active */
  return m;
}
#define CONT_CATCH(k) ((Catch *)(OBJ(k)[1] & ~(V)1))

static _Noreturn void do_raise(V obj, int continuable) {
  (void)continuable;
  for (;;) {
    if (handlers == NIL) {
      throw_val = obj;
      longjmp(toplevel_catch->jb, 1);
    }
    V h = CAR(handlers);
    if (IS(h, K_CONT)) { /* a guard: unwind to it */
      throw_val = obj;
      unwind_to(VREF(h, 1));
      handlers = VREF(h, 2);
      longjmp(CONT_CATCH(h)->jb, 1);
    }
    V saved = handlers;
    handlers = CDR(handlers);
    apply_proc(h, 1, &obj);
    handlers = saved;
    /* A handler returned from a non-continuable raise: R7RS says a
     * secondary exception is raised in the same dynamic environment as
     * the handler. */
    obj = mkerror("handler returned from non-continuable raise", cons(obj, NIL));
    handlers = CDR(handlers);
  }
}

static V raise_continuable(V obj) {
  if (handlers == NIL || IS(CAR(handlers), K_CONT)) do_raise(obj, 1);
  V h = CAR(handlers);
  V saved = handlers;
  handlers = CDR(handlers);
  V r = apply_proc(h, 1, &obj);
  handlers = saved;
  return r;
}

/* The rest of the interpreter, one idea per file, compiled as this one
 * translation unit (parts/ is not built alone: see the Makefile). */
#include "parts/read_print.c"
#include "parts/compile.c"
#include "parts/eval.c"
#include "parts/data.c"
#include "parts/control.c"
#include "parts/threads.c"
#include "parts/driver.c"
