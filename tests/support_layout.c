/* Random layouts of a fake moving space (support_layout.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "heap/object.h"
#include "support_layout.h"

uint64_t traced_tag(size_t payload) { return ((payload / 8 - 1) << 4) | 0x5; }
int traced_tag_bad;

static void trace_traced(void *obj, size_t payload, fh_visit_fn visit, void *ctx) {
  void **slots = obj;
  uint64_t tag = ((uint64_t *)obj)[payload / 8 - 1];
  if (tag != traced_tag(payload)) { /* its page went back too early */
    traced_tag_bad = 1;
    return;
  }
  for (size_t i = 0; i < (tag >> 4); i++) visit(&slots[i], ctx);
}

static uint64_t rng = 88172645463325252ull;
uint64_t next_rand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

static size_t random_size(int style) {
  uint64_t r = next_rand() % 1000;
  if (style == 1 && r < 30) return 4096 * (1 + next_rand() % 5) + 8 * (next_rand() % 64);
  if (r < 5) return 8 * (500 + next_rand() % 2000); /* straddles pages */
  return 8 * (1 + next_rand() % 12);
}

/* Build a random layout.  style 0: mostly small; 1: with many large objects
 * and long dead runs.  live_pct: chance an object is live. */
void make_layout(layout *L, int style, unsigned live_pct) {
  memset(L, 0, sizeof *L);
  L->base = (uintptr_t)mmap(NULL, SPACE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  L->from = mmap(NULL, SPACE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(L->base != (uintptr_t)MAP_FAILED && L->from != MAP_FAILED);
  assert_int_equal(types_init(&L->types), 0);
  fh_type tr = {.name = "refs", .flags = FH_TYPE_REF_ARRAY};
  fh_type tb = {.name = "raw"};
  fh_type tt = {.name = "traced", .trace = trace_traced};
  L->refs = types_register(&L->types, &tr);
  L->raw = types_register(&L->types, &tb);
  L->traced = types_register(&L->types, &tt);
  assert_true(L->refs && L->raw && L->traced);
  size_t cap = SPACE / 16;
  L->start = calloc(cap, sizeof *L->start);
  L->bytes = calloc(cap, sizeof *L->bytes);
  L->live = calloc(cap, sizeof *L->live);
  uintptr_t p = L->base, limit = L->base + SPACE - (64 << 10);
  int dead_run = 0;
  while (L->n < cap) {
    size_t b = random_size(style);
    if (p + b > limit) break;
    size_t i = L->n++;
    L->start[i] = p;
    L->bytes[i] = b;
    if (style == 1 && dead_run == 0 && next_rand() % 200 == 0) dead_run = 100 + next_rand() % 400;
    L->live[i] = dead_run ? 0 : next_rand() % 100 < live_pct;
    if (dead_run) dead_run--;
    unsigned kind = (unsigned)(next_rand() % 3);
    uint32_t ty = kind == 0 ? L->raw : kind == 1 ? L->refs : L->traced;
    if (ty == L->traced && b < 16) ty = L->raw; /* it needs its last word */
    *(uint64_t *)p = fh__make_header(ty, b - 8);
    for (size_t off = 8; off < b; off += 8) *(uint64_t *)(p + off) = next_rand() | 1; /* not a ref */
    if (ty == L->traced) *(uint64_t *)(p + b - 8) = traced_tag(b - 8);
    p += b;
  }
  L->top = p;
  /* Refs: each ref-array object points at random live objects, NULL, or
   * memory outside the space. */
  size_t nlive = 0;
  for (size_t i = 0; i < L->n; i++) nlive += L->live[i];
  uintptr_t *lives = calloc(nlive + 1, sizeof *lives);
  for (size_t i = 0, k = 0; i < L->n; i++)
    if (L->live[i]) lives[k++] = L->start[i];
  for (size_t i = 0; i < L->n; i++) {
    uint32_t ty = hdr_type(*(uint64_t *)L->start[i]);
    if (ty != L->refs && ty != L->traced) continue;
    for (size_t off = 8; off < L->bytes[i] - (ty == L->traced ? 8 : 0); off += 8) {
      uint64_t r = next_rand() % 10;
      uintptr_t v = r < 6 && nlive ? lives[next_rand() % nlive] + 8 : r < 8 ? 0 : 0x1000 + 8 * r;
      *(uintptr_t *)(L->start[i] + off) = v;
    }
  }
  free(lives);
  memcpy(L->from, (void *)L->base, L->top - L->base);
}

void free_layout(layout *L) {
  munmap((void *)L->base, SPACE);
  munmap(L->from, SPACE);
  types_destroy(&L->types);
  free(L->start), free(L->bytes), free(L->live);
}

