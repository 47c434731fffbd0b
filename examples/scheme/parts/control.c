/* fhscheme, primitives on control, ports and the heap: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
/* ------------------------------------------------------------------ */
/* Procedures, control */

PRIM(p_procedurep) { UNUSED; V f = argv[0]; return BOOL(ISOBJ(f) && (KIND(f) == K_CLOSURE || KIND(f) == K_PRIM || KIND(f) == K_CONT || KIND(f) == K_PARAM || KIND(f) == K_GUARDIAN)); }
PRIM(p_apply) { return apply_proc((V)P_apply, argc, argv); }
static V values_obj(int argc, V *argv) {
  if (argc == 1) return argv[0];
  V v = mkobj(K_VALUES, (size_t)argc);
  for (int i = 0; i < argc; i++) VSET(v, i, argv[i]);
  return v;
}
PRIM(p_values) { return values_obj(argc, argv); }
PRIM(p_call_with_values) {
  UNUSED;
  V v = apply_proc(argv[0], 0, NULL);
  if (IS(v, K_VALUES)) {
    int n = (int)LEN(v);
    V a[n ? n : 1];
    for (int i = 0; i < n; i++) a[i] = VREF(v, i);
    return apply_proc(argv[1], n, a);
  }
  return apply_proc(argv[1], 1, &v);
}
PRIM(p_callcc) { UNUSED; return callcc_run(argv[0]); }
PRIM(p_dynamic_wind) {
  UNUSED;
  apply_proc(argv[0], 0, NULL);
  winders = cons(cons(argv[0], argv[2]), winders);
  V r = apply_proc(argv[1], 0, NULL);
  winders = CDR(winders);
  apply_proc(argv[2], 0, NULL);
  return r;
}
PRIM(p_error) {
  V irritants = NIL;
  for (int i = argc - 1; i >= 1; i--) irritants = cons(argv[i], irritants);
  V e = mkobj(K_ERROR, 2);
  VSET(e, 0, IS(argv[0], K_STRING) ? argv[0] : argv[0]);
  VSET(e, 1, irritants);
  do_raise(e, 0);
}
PRIM(p_raise) { UNUSED; do_raise(argv[0], 0); }
PRIM(p_raise_continuable) { UNUSED; return raise_continuable(argv[0]); }
PRIM(p_with_exception_handler) {
  UNUSED;
  V saved = handlers;
  handlers = cons(argv[0], handlers);
  V r = apply_proc(argv[1], 0, NULL);
  handlers = saved;
  return r;
}
PRIM(p_error_objectp) { UNUSED; return BOOL(IS(argv[0], K_ERROR)); }
PRIM(p_error_object_message) { UNUSED; return IS(argv[0], K_ERROR) ? VREF(argv[0], 0) : mkstr("", 0); }
PRIM(p_error_object_irritants) { UNUSED; return IS(argv[0], K_ERROR) ? VREF(argv[0], 1) : NIL; }
PRIM(p_exit) {
  fflush(stdout);
  exit(argc == 0 || argv[0] == TRUE_V ? 0 : ISFIX(argv[0]) ? (int)FIXV(argv[0]) : 1);
}
PRIM(p_void) { UNUSED; return UNSPEC; }
PRIM(p_booleanp) { UNUSED; return BOOL(argv[0] == TRUE_V || argv[0] == FALSE_V); }
PRIM(p_boolean_eq) { UNUSED; return BOOL(argv[0] == argv[1]); }

/* Promises: [done?, value-or-thunk] */
PRIM(p_make_promise) {
  V p = mkobj(K_PROMISE, 2);
  if (argc == 1) { VSET(p, 0, TRUE_V); VSET(p, 1, argv[0]); }
  else { VSET(p, 0, argv[0]); VSET(p, 1, argv[1]); }
  return p;
}
PRIM(p_force) {
  UNUSED;
  V p = argv[0];
  if (!IS(p, K_PROMISE)) return p;
  while (VREF(p, 0) == FALSE_V) {
    V r = apply_proc(VREF(p, 1), 0, NULL);
    if (VREF(p, 0) != FALSE_V) break;
    if (IS(r, K_PROMISE)) { VSET(p, 0, VREF(r, 0)); VSET(p, 1, VREF(r, 1)); }
    else { VSET(p, 0, TRUE_V); VSET(p, 1, r); }
  }
  return VREF(p, 1);
}

/* Records: rtd [name, field names]; record [rtd, fields...] */
PRIM(p_make_rtd) { UNUSED; V r = mkobj(K_RTD, 2); VSET(r, 0, argv[0]); VSET(r, 1, argv[1]); return r; }
PRIM(p_record_new) {
  V r = mkobj(K_RECORD, (size_t)argc);
  for (int i = 0; i < argc; i++) VSET(r, i, argv[i]);
  return r;
}
PRIM(p_record_p) { UNUSED; return BOOL(IS(argv[0], K_RECORD) && VREF(argv[0], 0) == argv[1]); }
PRIM(p_record_ref) {
  UNUSED;
  if (!IS(argv[0], K_RECORD) || VREF(argv[0], 0) != argv[1]) err("record accessor: wrong record type", argv[0]);
  return VREF(argv[0], 1 + FIXV(argv[2]));
}
PRIM(p_record_set) {
  UNUSED;
  if (!IS(argv[0], K_RECORD) || VREF(argv[0], 0) != argv[1]) err("record modifier: wrong record type", argv[0]);
  VSET(argv[0], 1 + FIXV(argv[2]), argv[3]);
  return UNSPEC;
}

/* eq?-hashtables on identity hashes: [count, buckets vector]; buckets are
 * alists.  fh_object_hash stays valid across moves: no rehash after GC. */
static uint64_t eq_hash(V k) {
  if (ISPAIR(k) || ISOBJ(k) || ISFLO(k)) return obj_hash(k);
  return (uint64_t)k * 0x9E3779B97F4A7C15ull >> 7;
}
PRIM(p_make_eq_hashtable) {
  size_t n = argc > 0 && ISFIX(argv[0]) && FIXV(argv[0]) > 16 ? (size_t)FIXV(argv[0]) : 64;
  V t = mkobj(K_TABLE, 2);
  VSET(t, 0, FIX(0));
  V b = mkvec(n, NIL);
  VSET(t, 1, b);
  return t;
}
static V ht_cell(V t, V k) {
  V b = VREF(t, 1);
  for (V l = VREF(b, eq_hash(k) % LEN(b)); l != NIL; l = CDR(l))
    if (CAR(CAR(l)) == k) return CAR(l);
  return 0;
}
static V p_hashtable_ref_unlocked(int argc, V *argv) {
  V c = ht_cell(argv[0], argv[1]);
  return c ? CDR(c) : argc > 2 ? argv[2] : FALSE_V;
}
static V p_hashtable_containsp_unlocked(int argc, V *argv) { UNUSED; return BOOL(ht_cell(argv[0], argv[1]) != 0); }
static V p_hashtable_set_unlocked(int argc, V *argv) {
  UNUSED;
  V t = argv[0], k = argv[1];
  V c = ht_cell(t, k);
  if (c) { SETCDR(c, argv[2]); return UNSPEC; }
  V b = VREF(t, 1);
  size_t n = (size_t)FIXV(VREF(t, 0));
  if (n > 2 * LEN(b)) { /* grow */
    V nb = mkvec(LEN(b) * 4, NIL);
    for (size_t i = 0; i < LEN(b); i++)
      for (V l = VREF(b, i); l != NIL; l = CDR(l)) {
        size_t j = eq_hash(CAR(CAR(l))) % LEN(nb);
        VSET(nb, j, cons(CAR(l), VREF(nb, j)));
      }
    VSET(t, 1, nb);
    b = nb;
  }
  size_t i = eq_hash(k) % LEN(b);
  V cell = cons(k, argv[2]);
  VSET(b, i, cons(cell, VREF(b, i)));
  VSET(t, 0, FIX(n + 1));
  return UNSPEC;
}
static V p_hashtable_delete_unlocked(int argc, V *argv) {
  UNUSED;
  V t = argv[0], b = VREF(t, 1);
  size_t i = eq_hash(argv[1]) % LEN(b);
  V prev = 0;
  for (V l = VREF(b, i); l != NIL; prev = l, l = CDR(l))
    if (CAR(CAR(l)) == argv[1]) {
      if (prev) SETCDR(prev, CDR(l));
      else VSET(b, i, CDR(l));
      VSET(t, 0, FIX(FIXV(VREF(t, 0)) - 1));
      break;
    }
  return UNSPEC;
}
PRIM(p_hashtable_count) { UNUSED; return VREF(argv[0], 0); }
/* With several Scheme threads, each operation holds the global lock. */
#define HT_LOCKED(name)                                                        \
  PRIM(name) {                                                                 \
    glock_acquire();                                                           \
    V r = name##_unlocked(argc, argv);                                         \
    glock_release();                                                           \
    return r;                                                                  \
  }
static V p_hashtable_keys_unlocked(int argc, V *argv) {
  UNUSED;
  V b = VREF(argv[0], 1), r = NIL;
  for (size_t i = 0; i < LEN(b); i++) for (V l = VREF(b, i); l != NIL; l = CDR(l)) r = cons(CAR(CAR(l)), r);
  return p_list_to_vector(1, &r);
}

HT_LOCKED(p_hashtable_ref)
HT_LOCKED(p_hashtable_containsp)
HT_LOCKED(p_hashtable_set)
HT_LOCKED(p_hashtable_delete)
HT_LOCKED(p_hashtable_keys)

/* ------------------------------------------------------------------ */
/* Ports and I/O */

static Port *out_port(int argc, V *argv, int i) {
  V p = argc > i ? argv[i] : cur_out;
  if (!IS(p, K_PORT)) err("not a port", p);
  return PORT(p);
}
static Port *in_port(int argc, V *argv, int i) {
  V p = argc > i ? argv[i] : cur_in;
  if (!IS(p, K_PORT)) err("not a port", p);
  return PORT(p);
}
PRIM(p_display) { print(argv[0], out_port(argc, argv, 1), 0); return UNSPEC; }
PRIM(p_write) { print(argv[0], out_port(argc, argv, 1), 1); return UNSPEC; }
PRIM(p_newline) { port_write(out_port(argc, argv, 0), "\n", 1); return UNSPEC; }
PRIM(p_write_char) { char c = (char)CHRV(argv[0]); port_write(out_port(argc, argv, 1), &c, 1); return UNSPEC; }
PRIM(p_write_string) { V s = need_str(argv[0]); port_write(out_port(argc, argv, 1), STR(s), LEN(s)); return UNSPEC; }
PRIM(p_write_u8) { char c = (char)FIXV(argv[0]); port_write(out_port(argc, argv, 1), &c, 1); return UNSPEC; }
PRIM(p_flush) { Port *p = out_port(argc, argv, 0); if (p->f) fflush(p->f); return UNSPEC; }
PRIM(p_read) { return read_datum(in_port(argc, argv, 0)); }
PRIM(p_read_char) { int c = port_getc(in_port(argc, argv, 0)); return c == EOF ? EOF_V : CHR(c); }
PRIM(p_peek_char) { int c = port_peekc(in_port(argc, argv, 0)); return c == EOF ? EOF_V : CHR(c); }
PRIM(p_read_u8) { int c = port_getc(in_port(argc, argv, 0)); return c == EOF ? EOF_V : FIX(c); }
PRIM(p_peek_u8) { int c = port_peekc(in_port(argc, argv, 0)); return c == EOF ? EOF_V : FIX(c); }
PRIM(p_char_readyp) { (void)in_port(argc, argv, 0); return TRUE_V; }
PRIM(p_read_line) {
  Port *p = in_port(argc, argv, 0);
  size_t n = 0, cap = 128;
  char *b = malloc(cap);
  int c;
  while ((c = port_getc(p)) != EOF && c != '\n') {
    if (n + 1 >= cap) b = realloc(b, cap *= 2);
    b[n++] = (char)c;
  }
  V r = c == EOF && n == 0 ? EOF_V : mkstr(b, n);
  free(b);
  return r;
}
PRIM(p_read_string) {
  Port *p = in_port(argc, argv, 1);
  size_t k = (size_t)FIXV(argv[0]), n = 0;
  char *b = malloc(k + 1);
  int c;
  while (n < k && (c = port_getc(p)) != EOF) b[n++] = (char)c;
  V r = n == 0 && k > 0 ? EOF_V : mkstr(b, n);
  free(b);
  return r;
}
PRIM(p_eof_object) { UNUSED; return EOF_V; }
PRIM(p_eof_objectp) { UNUSED; return BOOL(argv[0] == EOF_V); }
PRIM(p_current_output_port) { UNUSED; return cur_out; }
PRIM(p_current_input_port) { UNUSED; return cur_in; }
PRIM(p_current_error_port) { UNUSED; return cur_err; }
PRIM(p_portp) { UNUSED; return BOOL(IS(argv[0], K_PORT)); }
PRIM(p_input_portp) { UNUSED; return BOOL(IS(argv[0], K_PORT) && PORT(argv[0])->input); }
PRIM(p_output_portp) { UNUSED; return BOOL(IS(argv[0], K_PORT) && !PORT(argv[0])->input); }
PRIM(p_open_input_string) {
  UNUSED;
  Port *pt = calloc(1, sizeof *pt);
  pt->input = pt->isstring = 1;
  pt->len = LEN(argv[0]);
  pt->buf = malloc(pt->len + 1);
  memcpy(pt->buf, STR(argv[0]), pt->len);
  return mkport(pt);
}
PRIM(p_open_output_string) {
  UNUSED;
  Port *pt = calloc(1, sizeof *pt);
  pt->isstring = 1;
  return mkport(pt);
}
PRIM(p_get_output_string) { UNUSED; Port *p = PORT(argv[0]); return mkstr(p->buf, p->len); }
static V open_file(V name, int input) {
  char *s = strndup(STR(need_str(name)), LEN(name));
  FILE *f = fopen(s, input ? "r" : "w");
  free(s);
  if (!f) err("cannot open file", name);
  Port *pt = calloc(1, sizeof *pt);
  pt->f = f;
  pt->input = input;
  return mkport(pt);
}
PRIM(p_open_input_file) { UNUSED; return open_file(argv[0], 1); }
PRIM(p_open_output_file) { UNUSED; return open_file(argv[0], 0); }
PRIM(p_close_port) { UNUSED; port_close(PORT(argv[0])); return UNSPEC; }
PRIM(p_file_existsp) { UNUSED; char *s = strndup(STR(argv[0]), LEN(argv[0])); int r = access(s, F_OK) == 0; free(s); return BOOL(r); }
PRIM(p_with_output_to_string) {
  UNUSED;
  Port *pt = calloc(1, sizeof *pt);
  pt->isstring = 1;
  V p = mkport(pt), saved = cur_out;
  cur_out = p;
  apply_proc(argv[0], 0, NULL);
  cur_out = saved;
  return mkstr(pt->buf, pt->len);
}
PRIM(p_call_with_output_string) {
  UNUSED;
  Port *pt = calloc(1, sizeof *pt);
  pt->isstring = 1;
  V p = mkport(pt);
  apply_proc(argv[0], 1, &p);
  return mkstr(pt->buf, pt->len);
}

/* Time */
static struct timespec t_start;
PRIM(p_current_jiffy) {
  UNUSED;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return FIX((ts.tv_sec - t_start.tv_sec) * 1000000 + (ts.tv_nsec - t_start.tv_nsec) / 1000);
}
PRIM(p_jiffies_per_second) { UNUSED; return FIX(1000000); }
PRIM(p_current_second) {
  UNUSED;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return mkflo((double)ts.tv_sec + ts.tv_nsec / 1e9);
}

/* ------------------------------------------------------------------ */
/* Heap features: collection, guardians, finalized ports */

/* Guardians (Dybvig/Guile style): (make-guardian) returns a procedure g;
 * (g obj) registers obj, (g) returns an object registered with g that
 * became unreachable, or #f.  Each registration is a faultheap finalizer
 * whose data word is the guardian's number (odd: ports use their Port*);
 * popped objects go to that guardian's queue.  Guardians are kept in a
 * registry vector (a root), so a guardian itself is never collected. */
static V guardians; /* vector of K_GUARDIAN [queue] */
static size_t nguardians;

static void free_sync(intptr_t data);
static void run_finalizers(void) {
  V obj;
  intptr_t data;
  glock_acquire();
  while (pop_finalized(&obj, &data)) {
    if ((data & 3) == 2) { /* a mutex or condition variable's C side */
      free_sync(data);
      continue;
    }
    if (data & 1) {
      size_t g = (size_t)(data >> 1);
      V gd = VREF(guardians, g);
      /* Restore the pair tag: finalizers see untagged objects. */
      V q = cons(VREF(gd, 1) == FALSE_V ? obj : obj, VREF(gd, 0));
      VSET(gd, 0, q);
    } else {
      port_close((Port *)data);
      ports_finalized++;
    }
  }
  glock_release();
}
PRIM(p_collect) { UNUSED; collect_now(); run_finalizers(); return UNSPEC; }
PRIM(p_make_guardian) {
  UNUSED;
  glock_acquire();
  if (nguardians == LEN(guardians)) {
    V nv = mkvec(LEN(guardians) * 2, FALSE_V);
    for (size_t i = 0; i < nguardians; i++) VSET(nv, i, VREF(guardians, i));
    guardians = nv;
  }
  V g = mkobj(K_GUARDIAN, 3);
  VSET(g, 0, NIL);              /* queue */
  VSET(g, 1, FALSE_V);
  VSET(g, 2, FIX(nguardians));  /* its number */
  VSET(guardians, nguardians, g);
  nguardians++;
  glock_release();
  return g;
}
static V guardian_call(V g, int argc, V *argv) {
  if (argc == 1) {
    V o = argv[0];
    if (!(ISPAIR(o) || ISOBJ(o) || ISFLO(o))) return UNSPEC;
    if (ISPAIR(o) || ISFLO(o)) err("guardians hold vectors, strings, records and other boxed objects, not pairs or flonums", o);
    attach_finalizer(o, (FIXV(VREF(g, 2)) << 1) | 1);
    return UNSPEC;
  }
  run_finalizers();
  V q = VREF(g, 0);
  if (q == NIL) return FALSE_V;
  VSET(g, 0, CDR(q));
  return CAR(q);
}
PRIM(p_guardian_call) { return guardian_call(argv[0], argc - 1, argv + 1); }
PRIM(p_ports_finalized) { UNUSED; run_finalizers(); return FIX(ports_finalized); }
PRIM(p_make_parameter) {
  UNUSED;
  V p = mkobj(K_PARAM, 1);
  VSET(p, 0, argv[0]);
  return p;
}
PRIM(p_implementation_name) { UNUSED; return mkstr("fhscheme", 8); }

/* Weak boxes over ephemerons, for tests: (make-weak-box x), (weak-box-ref b). */
#ifndef FHS_BDW
PRIM(p_make_weak_box) {
  UNUSED;
  V o = argv[0];
  V box = mkobj(K_EPH, 1);
  if (ISOBJ(o)) {
    void *e = fh_ephemeron_new(T, (void *)o, NULL);
    if (!e) oom();
    VSET(box, 0, (V)e);
  } else VSET(box, 0, FALSE_V);
  return box;
}
PRIM(p_weak_box_ref) {
  UNUSED;
  V e = VREF(argv[0], 0);
  if (e == FALSE_V) return FALSE_V;
  void *k = fh_ephemeron_key(T, (void *)e);
  return k ? (V)k : FALSE_V;
}
#else
PRIM(p_make_weak_box) { UNUSED; V box = mkobj(K_EPH, 1); VSET(box, 0, argv[0]); return box; }
PRIM(p_weak_box_ref) { UNUSED; return VREF(argv[0], 0); }
#endif
