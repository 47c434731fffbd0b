/* fh_options: defaults, "key=value,..." parsing and validation.
 *
 * One table describes every option: its name (the fh_options field name),
 * its kind and its allowed range.  Parsing works on a copy and commits only
 * when the whole spec is valid, so a bad spec changes nothing. */
#include "heap/options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap/error.h"
#include "heap/mem_limit.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define FH_OBJ_ALIGN_MASK 7u /* objects are 8-byte aligned: tags live below */

typedef enum { OPT_SIZE, OPT_UINT, OPT_BOOL, OPT_COLLECTOR, OPT_STRING, OPT_MASK, OPT_ENUM } opt_kind;

typedef struct {
  const char *name;
  opt_kind kind;
  size_t offset;
  unsigned long long min, max;
  const char *const *names; /* OPT_ENUM: value k is names[k], k <= max */
} opt_desc;

#define OPT(field, kind, min, max) {#field, kind, offsetof(fh_options, field), min, max, NULL}
/* An enum option stored as an int-sized enum: its values' names. */
#define OPT_NAMES(field, names) \
  {#field, OPT_ENUM, offsetof(fh_options, field), 0, sizeof names / sizeof *names - 1, names}

static const char *const stack_roots_names[] = {
    [FH_STACK_ROOTS_PRECISE] = "precise",
    [FH_STACK_ROOTS_CONSERVATIVE] = "conservative",
};
static const char *const heap_policy_names[] = {
    [FH_HEAP_FIXED] = "fixed",
    [FH_HEAP_ADAPTIVE] = "adaptive",
};
static const opt_desc opt_table[] = {
    OPT(heap_max, OPT_SIZE, 1 * MiB, (unsigned long long)1 << 40),
    OPT(heap_reserve, OPT_SIZE, 0, (unsigned long long)1 << 40),
    OPT(non_moving_max, OPT_SIZE, 1 * MiB, 64 * GiB),
    OPT(collector, OPT_COLLECTOR, 0, 0),
    OPT(background_collector, OPT_COLLECTOR, 0, 0),
    OPT(hspace_compact_on_oom, OPT_BOOL, 0, 1),
    OPT(gc_threads, OPT_UINT, 1, 256),
    OPT(image_path, OPT_STRING, 0, 0),
    OPT(image_share, OPT_STRING, 0, 0),
    OPT(image_trust, OPT_STRING, 0, 0),
    OPT(verify, OPT_BOOL, 0, 1),
    OPT(uffd_sigbus, OPT_BOOL, 0, 1),
    OPT(growth_factor_pct, OPT_UINT, 110, 10000),
    OPT(min_alloc_trigger, OPT_SIZE, 64 * KiB, (unsigned long long)1 << 40),
    OPT(tlab_size, OPT_SIZE, 4 * KiB, 1 * MiB),
    OPT(hspace_fragmentation_pct, OPT_UINT, 0, 100000),
    OPT(hspace_min_interval_ms, OPT_UINT, 0, 86400000),
    /* Low bits of a slot value: below the 8-byte object alignment. */
    OPT(tag_immediate_mask, OPT_MASK, 0, FH_OBJ_ALIGN_MASK),
    OPT(tag_pointer_mask, OPT_MASK, 0, FH_OBJ_ALIGN_MASK),
    OPT(trace, OPT_BOOL, 0, 1),
    OPT(gc_stress, OPT_UINT, 0, 1000000000),
    OPT_NAMES(stack_roots, stack_roots_names),
    OPT_NAMES(heap_policy, heap_policy_names),
    OPT(heap_expansiveness, OPT_SIZE, 1 * MiB, (unsigned long long)1 << 40),
    OPT(los_threshold, OPT_SIZE, 0, (unsigned long long)1 << 32),
    OPT(generational, OPT_BOOL, 0, 2),
    OPT(concurrent_mark, OPT_BOOL, 0, 1),
    OPT(gc_cpu_pct, OPT_UINT, 1, 100),
};

static const char *const collector_names[] = {
    [FH_SEMISPACE] = "semispace",
    [FH_MARK_SWEEP] = "mark_sweep",
    [FH_MARK_COMPACT] = "mark_compact",
    [FH_CONCURRENT_COMPACT] = "concurrent_compact",
    [FH_HSPACE_COMPACT] = "hspace_compact",
    [FH_COLLECTOR_AUTO] = "auto",
    [FH_GEN_SEMISPACE] = "gen_semispace",
};
/* The last fh_collector value (new collectors are added after auto). */
#define COLLECTOR_LAST FH_GEN_SEMISPACE

const char *options_heap_policy_name(fh_heap_policy p) {
  return (unsigned)p <= FH_HEAP_ADAPTIVE ? heap_policy_names[p] : "?";
}

const char *options_stack_roots_name(fh_stack_roots r) {
  return (unsigned)r <= FH_STACK_ROOTS_CONSERVATIVE ? stack_roots_names[r] : "?";
}

const char *options_collector_name(fh_collector c) {
  return (unsigned)c <= COLLECTOR_LAST ? collector_names[c] : "?";
}

/* The CPUs this process may run on: one system call, where
 * sysconf(_SC_NPROCESSORS_ONLN) opens and reads a sysfs file (~10 us, 4% of
 * an image boot); and a process confined to fewer CPUs (taskset, a cgroup
 * cpuset) wants no more collector threads than it has CPUs. */
long heap_usable_cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return sysconf(_SC_NPROCESSORS_ONLN);
}

void fh_options_init(fh_options *o) {
  if (!o) return;
  long cpus = heap_usable_cpus();
  memset(o, 0, sizeof *o);
  o->heap_max = heap_default_max();
  o->non_moving_max = 64 * MiB;
  o->collector = FH_COLLECTOR_AUTO;
  o->background_collector = FH_COLLECTOR_AUTO;
  o->hspace_compact_on_oom = 1;
  o->gc_threads = cpus > 0 ? (unsigned)cpus : 1;
  o->image_path = NULL;
  o->verify = 0;
  o->uffd_sigbus = 1;
  o->growth_factor_pct = 200; /* ART and Go: twice the live data (docs/architecture.md) */
  o->min_alloc_trigger = 4 * MiB;
  o->tlab_size = 32 * KiB;
  o->hspace_fragmentation_pct = 25;
  o->hspace_min_interval_ms = 1000;
  o->heap_expansiveness = 48 * MiB;
  o->los_threshold = 12 * KiB;
  o->generational = 1; /* on with either kind of stack roots (collectors/mc_gen.c) */
  o->concurrent_mark = 0; /* opt-in for now: README, "concurrent_mark" */
  o->gc_cpu_pct = 20;     /* heap/gc_pace.h */
}

/* Strings in parsed options must outlive the spec they came from; they are
 * interned for the life of the process (options are parsed a handful of
 * times per process, so this is bounded in practice). */
static const char *intern_string(const char *s, size_t n) {
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  static struct interned { struct interned *next; char text[]; } *list;
  pthread_mutex_lock(&lock);
  struct interned *it;
  for (it = list; it; it = it->next)
    if (strlen(it->text) == n && memcmp(it->text, s, n) == 0) break;
  if (!it && (it = malloc(sizeof *it + n + 1))) {
    memcpy(it->text, s, n);
    it->text[n] = 0;
    it->next = list;
    list = it;
  }
  pthread_mutex_unlock(&lock);
  return it ? it->text : NULL;
}

static int parse_number(const char *v, size_t n, int allow_suffix, unsigned long long *out) {
  char buf[64];
  if (n == 0 || n >= sizeof buf) return -1;
  memcpy(buf, v, n);
  buf[n] = 0;
  if (!isdigit((unsigned char)buf[0])) return -1;
  char *end;
  errno = 0;
  /* 0x... for masks; sizes and counts are decimal (a leading 0 is not octal) */
  int hex = !allow_suffix && buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X');
  unsigned long long x = strtoull(buf, &end, hex ? 16 : 10);
  if (errno) return -1;
  unsigned shift = 0;
  if (allow_suffix && *end) {
    switch (*end) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    default: return -1;
    }
    end++;
  }
  if (*end) return -1;
  if (shift && x > (ULLONG_MAX >> shift)) return -1;
  *out = x << shift;
  return 0;
}

static int set_option(fh_options *o, const opt_desc *d, const char *v, size_t n) {
  char *field = (char *)o + d->offset;
  unsigned long long x;
  switch (d->kind) {
  case OPT_COLLECTOR:
    for (unsigned c = 0; c <= COLLECTOR_LAST; c++) {
      if (strlen(collector_names[c]) == n && memcmp(collector_names[c], v, n) == 0) {
        *(fh_collector *)field = (fh_collector)c;
        return 0;
      }
    }
    fh_error_set("option %s: unknown collector '%.*s' (semispace, mark_sweep, mark_compact, "
                 "concurrent_compact, gen_semispace%s, auto)", d->name, (int)n, v,
                 d->offset == offsetof(fh_options, background_collector) ? ", hspace_compact" : "");
    return -1;
  case OPT_ENUM: {
    for (unsigned k = 0; k <= d->max; k++) {
      if (strlen(d->names[k]) == n && memcmp(d->names[k], v, n) == 0) {
        _Static_assert(sizeof(fh_stack_roots) == sizeof(int) && sizeof(fh_heap_policy) == sizeof(int),
                       "enum options are int-sized");
        *(int *)field = (int)k;
        return 0;
      }
    }
    /* The list for the message only when it is needed: snprintf's first
     * call faults in two pages of libc's code (~5 us at start-up). */
    char list[128] = "";
    for (unsigned k = 0; k <= d->max; k++)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", d->names[k]);
    fh_error_set("option %s: unknown value '%.*s' (%s)", d->name, (int)n, v, list);
    return -1;
  }
  case OPT_STRING: {
    const char *s = n ? intern_string(v, n) : NULL;
    if (n && !s) { fh_error_set("option %s: out of memory", d->name); return -1; }
    *(const char **)field = s;
    return 0;
  }
  case OPT_SIZE:
  case OPT_UINT:
  case OPT_BOOL:
  case OPT_MASK:
    if (parse_number(v, n, d->kind == OPT_SIZE, &x) < 0) {
      fh_error_set("option %s: '%.*s' is not a valid %s", d->name, (int)n, v,
                   d->kind == OPT_SIZE ? "size (digits with optional k/M/G/T)"
                   : d->kind == OPT_BOOL ? "boolean (0 or 1)"
                   : d->kind == OPT_MASK ? "mask (decimal or 0x hex)" : "number");
      return -1;
    }
    if (x < d->min || x > d->max) {
      fh_error_set("option %s: %llu is out of range [%llu, %llu]", d->name, x, d->min, d->max);
      return -1;
    }
    if (d->kind == OPT_SIZE) *(size_t *)field = (size_t)x;
    else if (d->kind == OPT_MASK) *(uintptr_t *)field = (uintptr_t)x;
    else if (d->kind == OPT_UINT) *(unsigned *)field = (unsigned)x;
    else *(int *)field = (int)x;
    return 0;
  }
  return -1;
}

int fh_options_parse(fh_options *o, const char *spec) {
  if (!o || !spec) {
    fh_error_set("fh_options_parse: %s is NULL", o ? "spec" : "options");
    return -1;
  }
  fh_options tmp = *o;
  const char *p = spec;
  while (*p) {
    while (*p == ',' || isspace((unsigned char)*p)) p++;
    if (!*p) break;
    const char *key = p;
    while (*p && *p != '=' && *p != ',') p++;
    size_t klen = (size_t)(p - key);
    while (klen && isspace((unsigned char)key[klen - 1])) klen--;
    if (*p != '=') {
      fh_error_set("option '%.*s' has no value (expected key=value)", (int)klen, key);
      return -1;
    }
    const char *val = ++p;
    while (*p && *p != ',') p++;
    size_t vlen = (size_t)(p - val);
    const opt_desc *d = NULL;
    for (size_t i = 0; i < sizeof opt_table / sizeof opt_table[0]; i++)
      if (strlen(opt_table[i].name) == klen && memcmp(opt_table[i].name, key, klen) == 0)
        d = &opt_table[i];
    if (!d) {
      fh_error_set("unknown option '%.*s'", (int)klen, key);
      return -1;
    }
    if (set_option(&tmp, d, val, vlen) < 0) return -1;
  }
  if (options_validate(&tmp) < 0) return -1;
  *o = tmp;
  return 0;
}

int options_validate(const fh_options *o) {
  for (size_t i = 0; i < sizeof opt_table / sizeof opt_table[0]; i++) {
    const opt_desc *d = &opt_table[i];
    const char *field = (const char *)o + d->offset;
    unsigned long long x;
    switch (d->kind) {
    case OPT_SIZE: x = *(const size_t *)field; break;
    case OPT_UINT: x = *(const unsigned *)field; break;
    case OPT_BOOL: x = (unsigned long long)*(const int *)field; break;
    case OPT_MASK: x = *(const uintptr_t *)field; break;
    case OPT_ENUM: x = (unsigned)*(const int *)field; break;
    default: continue;
    }
    if (x < d->min || x > d->max) {
      fh_error_set("option %s: %llu is out of range [%llu, %llu]", d->name, x, d->min, d->max);
      return -1;
    }
  }
  if ((unsigned)o->collector > COLLECTOR_LAST || o->collector == FH_HSPACE_COMPACT) {
    fh_error_set("option collector: hspace_compact is only a background collector");
    return -1;
  }
  if ((unsigned)o->background_collector > COLLECTOR_LAST) {
    fh_error_set("option background_collector: invalid value %d", (int)o->background_collector);
    return -1;
  }
  if (o->los_threshold && o->los_threshold < FH__INLINE_MAX) {
    fh_error_set("option los_threshold: %zu is below 4 KiB (payloads up to 4 KiB are allocated "
                 "inline, never in the large-object space); 0 turns the space off",
                 o->los_threshold);
    return -1;
  }
  if (o->heap_reserve && o->heap_reserve < o->heap_max) {
    fh_error_set("option heap_reserve: %zu is below heap_max (%zu): the reservation must hold "
                 "the heap (0 means heap_max)", o->heap_reserve, o->heap_max);
    return -1;
  }
  if (o->tag_immediate_mask & o->tag_pointer_mask) {
    fh_error_set("options tag_immediate_mask (0x%lx) and tag_pointer_mask (0x%lx) share bits: a "
                 "bit cannot mark both an immediate and a tagged reference",
                 (unsigned long)o->tag_immediate_mask, (unsigned long)o->tag_pointer_mask);
    return -1;
  }
  if (o->tlab_size % 4096) {
    fh_error_set("option tlab_size: %zu is not a multiple of 4k", o->tlab_size);
    return -1;
  }
  return 0;
}
