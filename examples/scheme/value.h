/* fhscheme: value representation and the allocation shim.
 *
 * A value is one word:
 *   ...01   fixnum (62 bits), tag_immediate_mask=0x1 tells the heap odd words
 *           are not references
 *   ...11   other immediates: characters (low byte 0x0f), #f #t () and the
 *           unspecified, eof and unbound markers (small constants)
 *   p|2     a pair (tag_pointer_mask=0x6: the collector keeps the tag)
 *   p|4     a flonum (8-byte payload)
 *   p|0     any other object; its first payload word is our own header
 *           (len << 8 | kind << 1 | 1), odd so a reference array skips it.
 * Procedures implemented in C (Prim) are static structs outside the heap,
 * shaped like an object: the heap leaves pointers outside it alone.
 *
 * Built with -DFHS_BDW the same source allocates from Boehm GC instead
 * (GC_MALLOC, no barrier, no roots); that is the baseline build. */
#ifndef FHS_VALUE_H
#define FHS_VALUE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uintptr_t V;

#define FIX(n) ((V)(((uintptr_t)(intptr_t)(n) << 2) | 1))
#define FIXV(v) ((intptr_t)(v) >> 2)
#define ISFIX(v) (((v) & 3) == 1)
#define FIX_MAX (((intptr_t)1 << 61) - 1)
#define FIX_MIN (-((intptr_t)1 << 61))
#define CHR(c) ((V)(((uintptr_t)(c) << 8) | 0x0f))
#define CHRV(v) ((int)((v) >> 8))
#define ISCHR(v) (((v) & 0xff) == 0x0f)
#define FALSE_V ((V)0x07)
#define TRUE_V ((V)0x17)
#define NIL ((V)0x27)
#define UNSPEC ((V)0x37)
#define EOF_V ((V)0x47)
#define DEFAULT_V ((V)0x57)
#define UNBOUND ((V)0) /* zeroed memory: letrec slots, undefined globals */
#define BOOL(b) ((b) ? TRUE_V : FALSE_V)

#define ISPAIR(v) (((v) & 7) == 2)
#define ISFLO(v) (((v) & 7) == 4)
#define ISOBJ(v) (((v) & 7) == 0 && (v) != 0)
#define PP(v) ((V *)((v) - 2))
#define CAR(v) (PP(v)[0])
#define CDR(v) (PP(v)[1])
#define FLO(v) (*(double *)((v) - 4))
#define OBJ(v) ((V *)(v))
#define HDR(v) (OBJ(v)[0])
#define KIND(v) ((int)((HDR(v) >> 1) & 127))
#define LEN(v) ((size_t)(HDR(v) >> 8))
#define MKHDR(kind, len) ((V)(((uintptr_t)(len) << 8) | ((uintptr_t)(kind) << 1) | 1))
#define IS(v, k) (ISOBJ(v) && KIND(v) == (k))

enum {
  K_VECTOR = 1, K_STRING, K_SYMBOL, K_CLOSURE, K_PRIM, K_FRAME, K_RECORD, K_RTD,
  K_BYTEVECTOR, K_PORT, K_CONT, K_VALUES, K_TABLE, K_PROMISE, K_ERROR, K_GUARDIAN,
  K_EPH, K_PARAM, K_NODE, K_LAMBDA, K_THREAD, K_MUTEX, K_CONDVAR
};

/* The shim: every allocation and every store of a value into an object. */
void *alloc_refs(size_t nwords);   /* zeroed words, all traced but word 0 */
void *alloc_bytes(size_t nbytes);  /* zeroed, never traced (strings, flonums) */
void *alloc_pair(void);
void *alloc_flo(void);
enum { NM_REFS, NM_BYTES, NM_PAIR, NM_FLO };
void *alloc_nonmoving(int kind, size_t nwords); /* constants the code holds */

/* SAFEPOINT: where a mutator that may run long without allocating polls
 * for a collection another thread wants (closure entry: every loop; only
 * once a second Scheme thread exists: alone, allocation is the only
 * trigger, and gc_stress would count every call as a poll). */
/* INIT: a store that initialises the object just allocated, before this
 * thread allocates again or polls: a plain store, which faultheap allows
 * for it (faultheap.h, fh_write_ref) as it does cons's and mkvec's. */
#define INIT(obj, slot, v) ((void)(obj), *(slot) = (v))
#ifdef FHS_BDW
#define WB(obj, slot, v) (*(slot) = (v))
#define SAFEPOINT() ((void)0)
#else
#include <faultheap.h>
extern _Thread_local fh_thread *T; /* each Scheme thread is a mutator of its own */
#define WB(obj, slot, v) fh_write_ref(T, (void *)(obj), (void **)(slot), (void *)(v))
#define SAFEPOINT() fh_safepoint(T)
#endif

#endif
