/* fhscheme, the primitive table and the driver: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
/* ------------------------------------------------------------------ */
/* The primitive table */

#define P(name, fn, mn, mx) {name, fn, mn, mx, 0, NULL}
#define PI(name, fn, mn, mx, inl) {name, fn, mn, mx, inl, NULL}
static const struct pdef pdefs[] = {
  PI("+", p_add, 0, -1, I_ADD), PI("-", p_sub, 1, -1, I_SUB), PI("*", p_mul, 0, -1, I_MUL),
  P("/", p_div, 1, -1), PI("<", p_lt, 1, -1, I_LT), PI(">", p_gt, 1, -1, I_GT),
  PI("<=", p_le, 1, -1, I_LE), PI(">=", p_ge, 1, -1, I_GE), PI("=", p_numeq, 1, -1, I_NUMEQ),
  P("quotient", p_quotient, 2, 2), P("remainder", p_remainder, 2, 2), P("modulo", p_modulo, 2, 2),
  P("truncate-quotient", p_quotient, 2, 2), P("truncate-remainder", p_remainder, 2, 2),
  P("floor-remainder", p_modulo, 2, 2),
  P("gcd", p_gcd, 0, -1), P("lcm", p_lcm, 0, -1), P("exp", p_exp, 1, 1), P("log", p_log, 1, 2),
  P("sin", p_sin, 1, 1), P("cos", p_cos, 1, 1), P("tan", p_tan, 1, 1), P("asin", p_asin, 1, 1),
  P("acos", p_acos, 1, 1), P("atan", p_atan, 1, 2), P("sqrt", p_sqrt, 1, 1),
  P("exact-integer-sqrt", p_exact_integer_sqrt, 1, 1), P("expt", p_expt, 2, 2),
  P("floor", p_floor, 1, 1), P("ceiling", p_ceiling, 1, 1), P("truncate", p_truncate, 1, 1),
  P("round", p_round, 1, 1), P("abs", p_abs, 1, 1), P("min", p_min, 1, -1), P("max", p_max, 1, -1),
  P("exact", p_exact, 1, 1), P("inexact", p_inexact, 1, 1), P("inexact->exact", p_exact, 1, 1),
  P("exact->inexact", p_inexact, 1, 1), P("number?", p_numberp, 1, 1), P("integer?", p_integerp, 1, 1),
  P("rational?", p_numberp, 1, 1), P("real?", p_numberp, 1, 1), P("complex?", p_numberp, 1, 1),
  P("exact-integer?", p_exact_integerp, 1, 1), P("exact?", p_exactp, 1, 1), P("inexact?", p_inexactp, 1, 1),
  PI("zero?", p_zerop, 1, 1, I_ZEROP), P("positive?", p_positivep, 1, 1), P("negative?", p_negativep, 1, 1),
  P("odd?", p_oddp, 1, 1), P("even?", p_evenp, 1, 1), P("nan?", p_nanp, 1, 1),
  P("number->string", p_number_to_string, 1, 2), P("string->number", p_string_to_number, 1, 2),
  PI("eq?", p_eq, 2, 2, I_EQ), PI("eqv?", p_eqv, 2, 2, I_EQV), P("equal?", p_equal, 2, 2),
  PI("not", p_not, 1, 1, I_NOT), PI("cons", p_cons, 2, 2, I_CONS), PI("car", p_car, 1, 1, I_CAR),
  PI("cdr", p_cdr, 1, 1, I_CDR), PI("caar", p_caar, 1, 1, I_CAAR), PI("cadr", p_cadr, 1, 1, I_CADR),
  PI("cdar", p_cdar, 1, 1, I_CDAR), PI("cddr", p_cddr, 1, 1, I_CDDR), P("caaar", p_caaar, 1, 1),
  P("caadr", p_caadr, 1, 1), P("cadar", p_cadar, 1, 1), P("caddr", p_caddr, 1, 1), P("cdaar", p_cdaar, 1, 1),
  P("cdadr", p_cdadr, 1, 1), P("cddar", p_cddar, 1, 1), P("cdddr", p_cdddr, 1, 1), P("cadddr", p_cadddr, 1, 1),
  P("cddddr", p_cddddr, 1, 1), P("caaaar", p_caaaar, 1, 1), P("caaadr", p_caaadr, 1, 1), P("caadar", p_caadar, 1, 1), P("caaddr", p_caaddr, 1, 1), P("cadaar", p_cadaar, 1, 1), P("cadadr", p_cadadr, 1, 1), P("caddar", p_caddar, 1, 1), P("cdaaar", p_cdaaar, 1, 1), P("cdaadr", p_cdaadr, 1, 1), P("cdadar", p_cdadar, 1, 1), P("cdaddr", p_cdaddr, 1, 1), P("cddaar", p_cddaar, 1, 1), P("cddadr", p_cddadr, 1, 1), P("cdddar", p_cdddar, 1, 1), PI("set-car!", p_set_car, 2, 2, I_SETCAR), PI("set-cdr!", p_set_cdr, 2, 2, I_SETCDR),
  PI("pair?", p_pairp, 1, 1, I_PAIRP), PI("null?", p_nullp, 1, 1, I_NULLP), P("list?", p_listp, 1, 1),
  P("list", p_list, 0, -1), P("length", p_length, 1, 1), P("append", p_append, 0, -1),
  P("append!", p_append, 0, -1), P("reverse", p_reverse, 1, 1), P("reverse!", p_reverse, 1, 1),
  P("list-tail", p_list_tail, 2, 2), P("list-ref", p_list_ref, 2, 2), P("list-copy", p_list_copy, 1, 1),
  P("last-pair", p_last_pair, 1, 1), P("memq", p_memq, 2, 2), P("memv", p_memv, 2, 2), P("member", p_member, 2, 3),
  P("assq", p_assq, 2, 2), P("assv", p_assv, 2, 2), P("assoc", p_assoc, 2, 3), P("map", p_map, 2, -1),
  P("for-each", p_for_each, 2, -1), P("symbol?", p_symbolp, 1, 1), P("symbol->string", p_symbol_to_string, 1, 1),
  P("string->symbol", p_string_to_symbol, 1, 1), P("gensym", p_gensym, 0, 1), P("symbol-count", p_symbol_count, 0, 0),
  P("string?", p_stringp, 1, 1), P("char?", p_charp, 1, 1), P("char->integer", p_char_to_integer, 1, 1),
  P("integer->char", p_integer_to_char, 1, 1), PI("char=?", p_char_eq, 1, -1, I_CHAREQ), P("char<?", p_char_lt, 1, -1),
  P("char>?", p_char_gt, 1, -1), P("char<=?", p_char_le, 1, -1), P("char>=?", p_char_ge, 1, -1),
  P("char-ci=?", p_char_ci_eq, 1, -1), P("char-upcase", p_char_upcase, 1, 1), P("char-downcase", p_char_downcase, 1, 1),
  P("char-alphabetic?", p_char_alphabeticp, 1, 1), P("char-numeric?", p_char_numericp, 1, 1),
  P("char-whitespace?", p_char_whitespacep, 1, 1), P("char-upper-case?", p_char_upper_casep, 1, 1),
  P("char-lower-case?", p_char_lower_casep, 1, 1), P("digit-value", p_digit_value, 1, 1),
  P("make-string", p_make_string, 1, 2), P("string", p_string, 0, -1), P("string-length", p_string_length, 1, 1),
  PI("string-ref", p_string_ref, 2, 2, I_SREF), P("string-set!", p_string_set, 3, 3), P("substring", p_substring, 2, 3),
  P("string-append", p_string_append, 0, -1), P("string->list", p_string_to_list, 1, 3),
  P("list->string", p_list_to_string, 1, 1), P("string-copy", p_substring, 1, 3) /* the same with optional bounds */, P("string-copy!", p_string_copy_x, 3, 5),
  P("string-fill!", p_string_fill, 2, 2), P("string=?", p_string_eq, 1, -1), P("string<?", p_string_lt, 1, -1),
  P("string>?", p_string_gt, 1, -1), P("string<=?", p_string_le, 1, -1), P("string>=?", p_string_ge, 1, -1),
  P("string-ci=?", p_string_ci_eq, 1, -1), P("string-upcase", p_string_upcase, 1, 1),
  P("string-downcase", p_string_downcase, 1, 1), P("string-for-each", p_string_for_each, 2, 2),
  P("vector?", p_vectorp, 1, 1), P("make-vector", p_make_vector, 1, 2), P("vector", p_vector, 0, -1),
  PI("vector-length", p_vector_length, 1, 1, I_VLEN), PI("vector-ref", p_vector_ref, 2, 2, I_VREF),
  PI("vector-set!", p_vector_set, 3, 3, I_VSET), P("vector->list", p_vector_to_list, 1, 3),
  P("list->vector", p_list_to_vector, 1, 1), P("vector-fill!", p_vector_fill, 2, 4), P("vector-copy", p_vector_copy, 1, 3),
  P("vector-copy!", p_vector_copy_x, 3, 5), P("vector-map", p_vector_map, 2, 2), P("vector-for-each", p_vector_for_each, 2, 2),
  P("vector-append", p_vector_append, 0, -1), P("bytevector?", p_bytevectorp, 1, 1),
  P("make-bytevector", p_make_bytevector, 1, 2), P("bytevector", p_bytevector, 0, -1),
  P("bytevector-length", p_bytevector_length, 1, 1), P("bytevector-u8-ref", p_bytevector_u8_ref, 2, 2),
  P("bytevector-u8-set!", p_bytevector_u8_set, 3, 3), P("bytevector-copy", p_bytevector_copy, 1, 3),
  P("utf8->string", p_utf8_to_string, 1, 3), P("string->utf8", p_string_to_utf8, 1, 3),
  P("procedure?", p_procedurep, 1, 1), P("apply", p_apply, 2, -1), P("values", p_values, 0, -1),
  P("call-with-values", p_call_with_values, 2, 2), P("call-with-current-continuation", p_callcc, 1, 1),
  P("call/cc", p_callcc, 1, 1), P("dynamic-wind", p_dynamic_wind, 3, 3), P("error", p_error, 1, -1),
  P("raise", p_raise, 1, 1), P("raise-continuable", p_raise_continuable, 1, 1),
  P("with-exception-handler", p_with_exception_handler, 2, 2), P("error-object?", p_error_objectp, 1, 1),
  P("error-object-message", p_error_object_message, 1, 1), P("error-object-irritants", p_error_object_irritants, 1, 1),
  P("exit", p_exit, 0, 1), P("void", p_void, 0, -1), P("boolean?", p_booleanp, 1, 1), P("boolean=?", p_boolean_eq, 2, 2),
  P("make-promise", p_make_promise, 1, 2), P("force", p_force, 1, 1), P("%make-rtd", p_make_rtd, 2, 2),
  P("%record-new", p_record_new, 1, -1), P("%record?", p_record_p, 2, 2), P("%record-ref", p_record_ref, 3, 3),
  P("%record-set!", p_record_set, 4, 4), P("make-eq-hashtable", p_make_eq_hashtable, 0, 1),
  P("hashtable-ref", p_hashtable_ref, 2, 3), P("hashtable-contains?", p_hashtable_containsp, 2, 2),
  P("hashtable-set!", p_hashtable_set, 3, 3), P("hashtable-delete!", p_hashtable_delete, 2, 2),
  P("hashtable-count", p_hashtable_count, 1, 1), P("hashtable-keys", p_hashtable_keys, 1, 1),
  P("display", p_display, 1, 2), P("write", p_write, 1, 2), P("write-simple", p_write, 1, 2),
  P("write-shared", p_write, 1, 2), P("newline", p_newline, 0, 1), P("write-char", p_write_char, 1, 2),
  P("write-string", p_write_string, 1, 2), P("write-u8", p_write_u8, 1, 2), P("flush-output-port", p_flush, 0, 1),
  P("read", p_read, 0, 1), P("read-char", p_read_char, 0, 1), P("peek-char", p_peek_char, 0, 1),
  P("read-u8", p_read_u8, 0, 1), P("peek-u8", p_peek_u8, 0, 1), P("char-ready?", p_char_readyp, 0, 1),
  P("read-line", p_read_line, 0, 1), P("read-string", p_read_string, 1, 2), P("eof-object", p_eof_object, 0, 0),
  P("eof-object?", p_eof_objectp, 1, 1), P("current-output-port", p_current_output_port, 0, 0),
  P("current-input-port", p_current_input_port, 0, 0), P("current-error-port", p_current_error_port, 0, 0),
  P("port?", p_portp, 1, 1), P("input-port?", p_input_portp, 1, 1), P("output-port?", p_output_portp, 1, 1),
  P("textual-port?", p_portp, 1, 1), P("binary-port?", p_portp, 1, 1),
  P("open-input-string", p_open_input_string, 1, 1), P("open-output-string", p_open_output_string, 0, 0),
  P("get-output-string", p_get_output_string, 1, 1), P("open-input-file", p_open_input_file, 1, 1),
  P("open-output-file", p_open_output_file, 1, 1), P("close-port", p_close_port, 1, 1),
  P("close-input-port", p_close_port, 1, 1), P("close-output-port", p_close_port, 1, 1),
  P("file-exists?", p_file_existsp, 1, 1), P("with-output-to-string", p_with_output_to_string, 1, 1),
  P("call-with-output-string", p_call_with_output_string, 1, 1), P("current-jiffy", p_current_jiffy, 0, 0),
  P("jiffies-per-second", p_jiffies_per_second, 0, 0), P("current-second", p_current_second, 0, 0),
  P("collect", p_collect, 0, 0), P("gc", p_collect, 0, 0), P("make-guardian", p_make_guardian, 0, 0),
  P("%guardian-call", p_guardian_call, 1, 2), P("ports-finalized", p_ports_finalized, 0, 0),
  P("make-parameter", p_make_parameter, 1, 2), P("make-weak-box", p_make_weak_box, 1, 1),
  P("weak-box-ref", p_weak_box_ref, 1, 1), P("implementation-name", p_implementation_name, 0, 0),
  P("make-thread", p_make_thread, 1, 2), P("thread-start!", p_thread_start, 1, 1),
  P("thread-join!", p_thread_join, 1, 3), P("current-thread", p_current_thread, 0, 0),
  P("thread?", p_threadp, 1, 1), P("thread-name", p_thread_name, 1, 1),
  P("thread-specific", p_thread_specific, 1, 1), P("thread-specific-set!", p_thread_specific_set, 2, 2),
  P("thread-yield!", p_thread_yield, 0, 0), P("thread-sleep!", p_thread_sleep, 1, 1),
  P("make-mutex", p_make_mutex, 0, 1), P("mutex?", p_mutexp, 1, 1), P("mutex-name", p_mutex_name, 1, 1),
  P("mutex-lock!", p_mutex_lock, 1, 3), P("mutex-unlock!", p_mutex_unlock, 1, 3),
  P("make-condition-variable", p_make_condvar, 0, 1), P("condition-variable?", p_condvarp, 1, 1),
  P("condition-variable-signal!", p_condvar_signal, 1, 1),
  P("condition-variable-broadcast!", p_condvar_broadcast, 1, 1),
  {NULL, NULL, 0, 0, 0, NULL}};

enum { NPRIMS = sizeof pdefs / sizeof pdefs[0] - 1 };
static const struct pdef *pinfo(const Prim *p) { return &pdefs[FIXV(p->idx)]; }

/* Every primitive object, by pdefs index: a root (and an image root), so
 * the C globals below may hold them (they are non-moving). */
static V prims;

/* 17 lookups over ~300 names at every boot: the first byte is compared
 * before the whole name (strcmp over every name took 9 us of an image
 * boot). */
static Prim *find_prim(const char *name) {
  for (size_t i = 0; i < NPRIMS; i++)
    if (pdefs[i].name[0] == name[0] && !strcmp(pdefs[i].name, name)) return (Prim *)VREF(prims, i);
  return NULL;
}

static void find_prims(void) {
  P_cons = find_prim("cons");
  P_list = find_prim("list");
  P_append = find_prim("append");
  P_list2vec = find_prim("list->vector");
  P_memv = find_prim("memv");
  P_raise_cont = find_prim("raise-continuable");
  P_record_new = find_prim("%record-new");
  P_record_p = find_prim("%record?");
  P_record_ref = find_prim("%record-ref");
  P_record_set = find_prim("%record-set!");
  P_make_rtd = find_prim("%make-rtd");
  P_make_promise = find_prim("make-promise");
  P_cwv = find_prim("call-with-values");
  P_values = find_prim("values");
  P_error = find_prim("error");
  P_apply = find_prim("apply");
  P_not = find_prim("not");
}

static void init_prims(void) {
  prims = mkvec(NPRIMS, FALSE_V);
  for (size_t i = 0; i < NPRIMS; i++) {
    Prim *p = alloc_nonmoving(NM_REFS, 2);
    p->hdr = MKHDR(K_PRIM, 1);
    p->idx = FIX(i);
    VSET(prims, i, (V)p);
    V s = intern(pdefs[i].name);
    keep(s);
    WB(OBJ(s), &SYMVAL(s), (V)p);
  }
  find_prims();
}

static int booted_from_image;
static V ksym(const char *s) {
  V v = intern(s);
  if (!booted_from_image) keep(v);
  return v;
}

/* The symbols the compiler and reader use by name.  A boot from an image
 * takes them from the image's state vector (ST_KSYMS, in this order)
 * instead of looking each up: 37 lookups walked symbol-table buckets all
 * over the image (~12 us and most of the image's page faults at boot). */
static V *const ksym_slot[] = {
    &sym_quote, &sym_quasiquote, &sym_unquote, &sym_unquote_splicing, &sym_dot, &S_define,
    &S_lambda, &S_if, &S_set, &S_begin, &S_let, &S_letstar, &S_letrec, &S_letrecstar, &S_cond,
    &S_case, &S_and, &S_or, &S_when, &S_unless, &S_do, &S_else, &S_arrow, &S_drt, &S_import,
    &S_delay, &S_delay_force, &S_make_promise, &S_guard, &S_let_values, &S_letstar_values,
    &S_define_values, &S_case_lambda, &S_parameterize, &S_assert, &S_define_syntax, &S_named_lambda,
};
static const char *const ksym_name[] = {
    "quote", "quasiquote", "unquote", "unquote-splicing", ".", "define", "lambda", "if", "set!",
    "begin", "let", "let*", "letrec", "letrec*", "cond", "case", "and", "or", "when", "unless",
    "do", "else", "=>", "define-record-type", "import", "delay", "delay-force",
    "make-promise-syntax", "guard", "let-values", "let*-values", "define-values", "case-lambda",
    "parameterize", "assert", "define-syntax", "named-lambda",
};
enum { NKSYMS = sizeof ksym_slot / sizeof ksym_slot[0] };

static void init_syms(void) {
  for (size_t i = 0; i < NKSYMS; i++) *ksym_slot[i] = ksym(ksym_name[i]);
}

/* Guardians are procedures: (g obj) / (g).  The evaluator calls a K_GUARDIAN
 * through apply_proc's default case, so route it here. */

/* ------------------------------------------------------------------ */
/* Driver */

static void print_error(V e) {
  Port *p = PORT(cur_err);
  fflush(stdout);
  port_puts(p, "Error: ");
  if (IS(e, K_ERROR)) {
    print(VREF(e, 0), p, 0);
    for (V l = VREF(e, 1); ISPAIR(l); l = CDR(l)) {
      port_puts(p, " ");
      print(CAR(l), p, 1);
    }
  } else {
    port_puts(p, "non-condition object raised: ");
    print(e, p, 1);
  }
  port_puts(p, "\n");
  fflush(stderr);
}

static int run_port(Port *src) {
  Catch c;
  Catch *volatile prev = toplevel_catch;
  toplevel_catch = &c;
  if (setjmp(c.jb)) {
    toplevel_catch = prev;
    print_error(throw_val);
    return 70;
  }
  for (;;) {
    V x = read_datum(src);
    if (x == EOF_V) break;
    Node *n = comp(x, NULL);
    eval(n, NIL);
    run_finalizers();
  }
  toplevel_catch = prev;
  return 0;
}

static int g_argc;
static char **g_argv;
static int g_status;
static int g_first;
static long g_threads_left;
static double t_main, t_heap, t_thread, t_state;

#include "boot.c"
#include "prefork.c"

/* The interpreter recurses in C for non-tail calls, so it needs a stack
 * far larger than the main thread's 8 MiB (address space only until
 * touched).  It used to run on a second thread with a 1 GiB stack; the
 * main thread now switches to a 1 GiB stack of its own instead (ucontext),
 * and tells the heap where that stack ends (fh_thread_attach_stack): no
 * thread to start, whose first run waited for a CPU (0.05 ms on an idle
 * machine, 1-5 ms on a busy one: half of an image boot's median).  Boehm
 * GC finds stacks by itself (a second thread there), and the sanitizers
 * follow a switched stack badly: both keep the thread. */
#if defined(FHS_BDW) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FHS_OWN_STACK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FHS_OWN_STACK 0
#endif
#endif
#ifndef FHS_OWN_STACK
#define FHS_OWN_STACK 1
#endif
#define FHS_STACK_BYTES ((size_t)1 << 30)
static void *interp_stack_top; /* NULL: on a thread of its own */

static void *interp_main(void *arg) {
  (void)arg;
  t_thread = now_ms();
  heap_attach_thread_stack(interp_stack_top); /* NULL: the thread's own */
  add_root(&cpool);
  add_root(&winders);
  add_root(&handlers);
  add_root(&throw_val);
  add_root(&cur_in);
  add_root(&cur_out);
  add_root(&cur_err);
  add_root(&guardians);
  add_root(&prims);
  add_root(&main_thread);
  throw_val = UNSPEC;
  if (opts.image) {
    if (boot_image() < 0) exit(65);
  } else {
    sym_init();
    cpool = mkvec(1024, NIL);
    init_syms();
    init_prims();
  }
  guardians = mkvec(16, FALSE_V);
  main_thread = p_make_thread(1, &(V){FALSE_V});
  ((SThread *)CSIDE(main_thread, TH_C))->state = 1;
  t_state = now_ms();
  Port *pin = calloc(1, sizeof *pin), *pout = calloc(1, sizeof *pout), *perr = calloc(1, sizeof *perr);
  pin->f = stdin;
  pin->input = 1;
  pout->f = stdout;
  perr->f = stderr;
  cur_in = mkport(pin);
  cur_out = mkport(pout);
  cur_err = mkport(perr);
  clock_gettime(CLOCK_MONOTONIC, &t_start);
  int status = 0;
  if (opts.lib || opts.save_image) status = load_library();
  double t_ready = now_ms();
  boot_ms = t_ready - t_main;
  if (opts.boot_time)
    fprintf(stderr, "fhscheme: booted in %.3f ms (%s): heap %.3f, thread %.3f, state %.3f, library %.3f\n", boot_ms,
            opts.image ? "from the image" : opts.lib || opts.save_image ? "library from source" : "no library",
            t_heap - t_main, t_thread - t_heap, t_state - t_thread, t_ready - t_state);
  int i = g_first;
  int ran = 0;
  for (; i < g_argc && status == 0; i++) {
    if (!strcmp(g_argv[i], "-e") && i + 1 < g_argc) {
      Port *sp = calloc(1, sizeof *sp);
      sp->isstring = sp->input = 1;
      sp->buf = g_argv[++i];
      sp->len = strlen(sp->buf);
      sp->peeked = -2;
      status = run_port(sp);
      ran = 1;
      continue;
    }
    status = run_file(g_argv[i]);
    ran = 1;
  }
  /* With the boot line's, from the same main(): what a user waits for
   * before a first expression (`-e 1`) has its answer, whatever
   * initialisation a boot put off until first use. */
  if (opts.boot_time && ran)
    fprintf(stderr, "fhscheme: scripts done %.3f ms after main()\n", now_ms() - t_main);
  if (opts.save_image) {
    if (status == 0 && save_image(opts.save_image) < 0) status = 73;
    ran = 1;
  }
  if (opts.prefork && status == 0) {
    status = run_prefork(opts.prefork, opts.requests);
    ran = 1;
  }
  if (!ran) {
    /* No script: a simple REPL on stdin. */
    Port *sp = PORT(cur_in);
    for (;;) {
      Catch c;
      Catch *volatile prev = toplevel_catch;
      toplevel_catch = &c;
      if (setjmp(c.jb)) {
        print_error(throw_val);
        handlers = NIL;
        winders = NIL;
      }
      V x = read_datum(sp);
      if (x == EOF_V) break;
      V r = eval(comp(x, NULL), NIL);
      if (r != UNSPEC) {
        print(r, PORT(cur_out), 1);
        port_puts(PORT(cur_out), "\n");
      }
      toplevel_catch = prev;
    }
  }
  fflush(stdout);
  if (getenv("FHS_STATS")) heap_report(stderr);
  glock_acquire();
  g_threads_left = threads_live;
  glock_release();
  heap_detach_thread();
  g_status = status;
  return NULL;
}

#if FHS_OWN_STACK
static void interp_entry(void) { interp_main(NULL); } /* returns to main via uc_link */
#endif

int main(int argc, char **argv) {
  t_main = now_ms();
  g_argc = argc;
  g_argv = argv;
  g_first = parse_opts(argc, argv);
  heap_init(opts.image);
  polling = heap_marks_concurrently();
  t_heap = now_ms();
#if FHS_OWN_STACK
  {
    static ucontext_t main_ctx, interp_ctx;
    size_t guard = 4096;
    char *stk = mmap(NULL, FHS_STACK_BYTES + guard, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    /* The lowest page faults an overflow, as a thread stack's guard does. */
    if (stk != MAP_FAILED && mprotect(stk, guard, PROT_NONE) == 0 && getcontext(&interp_ctx) == 0) {
#ifdef MADV_POPULATE_WRITE
      /* The top pages are written at once (the context, the first frames):
       * one call instead of a fault each (~2 us apiece here).  Linux 5.14+;
       * elsewhere the faults just happen. */
      madvise(stk + guard + FHS_STACK_BYTES - 32768, 32768, MADV_POPULATE_WRITE);
#endif
      interp_ctx.uc_stack.ss_sp = stk + guard;
      interp_ctx.uc_stack.ss_size = FHS_STACK_BYTES;
      interp_ctx.uc_link = &main_ctx;
      makecontext(&interp_ctx, (void (*)(void))interp_entry, 0);
      interp_stack_top = stk + guard + FHS_STACK_BYTES;
      if (swapcontext(&main_ctx, &interp_ctx) == 0) {
        if (!g_threads_left) heap_fini(); /* else Scheme threads still run: exit without */
        return g_status;
      }
      interp_stack_top = NULL;
    }
    /* No stack of our own: a thread, as before. */
  }
#endif
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, (size_t)1 << 30);
  pthread_t th;
  if (pthread_create(&th, &at, interp_main, NULL) != 0) {
    perror("fhscheme: pthread_create");
    return 2;
  }
  pthread_join(th, NULL);
  if (!g_threads_left) heap_fini(); /* else Scheme threads still run: exit without */
  return g_status;
}
