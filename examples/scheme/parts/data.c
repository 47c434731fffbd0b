/* fhscheme, primitives on data: numbers, lists, symbols, strings, vectors: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
/* ------------------------------------------------------------------ */
/* Numbers: fixnums overflow to flonums (documented in the README). */

static double num_d(V v) {
  if (ISFIX(v)) return (double)FIXV(v);
  if (ISFLO(v)) return FLO(v);
  err("not a number", v);
}
static int isnum(V v) { return ISFIX(v) || ISFLO(v); }

static V arith2(int op, V a, V b) {
  if (ISFIX(a) && ISFIX(b)) {
    intptr_t x = FIXV(a), y = FIXV(b), r;
    int ovf;
    switch (op) {
    case I_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
    case I_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
    default: ovf = __builtin_mul_overflow(x, y, &r); break;
    }
    if (!ovf && r >= FIX_MIN && r <= FIX_MAX) return FIX(r);
    double dx = (double)x, dy = (double)y;
    return mkflo(op == I_ADD ? dx + dy : op == I_SUB ? dx - dy : dx * dy);
  }
  double x = num_d(a), y = num_d(b);
  return mkflo(op == I_ADD ? x + y : op == I_SUB ? x - y : x * y);
}
static int numeq2(int op, V a, V b) {
  double x = num_d(a), y = num_d(b);
  switch (op) {
  case I_LT: return x < y;
  case I_GT: return x > y;
  case I_LE: return x <= y;
  case I_GE: return x >= y;
  default: return x == y;
  }
}

#define PRIM(name) static V name(int argc, V *argv)
#define UNUSED (void)argc; (void)argv

PRIM(p_add) { V r = FIX(0); for (int i = 0; i < argc; i++) r = arith2(I_ADD, r, argv[i]); return r; }
PRIM(p_mul) { V r = FIX(1); for (int i = 0; i < argc; i++) r = arith2(I_MUL, r, argv[i]); return r; }
PRIM(p_sub) {
  if (argc == 1) return arith2(I_SUB, FIX(0), argv[0]);
  V r = argv[0];
  for (int i = 1; i < argc; i++) r = arith2(I_SUB, r, argv[i]);
  return r;
}
PRIM(p_div) {
  V r = argc == 1 ? FIX(1) : argv[0];
  for (int i = argc == 1 ? 0 : 1; i < argc; i++) {
    V b = argv[i];
    if (ISFIX(r) && ISFIX(b) && b != FIX(0) && FIXV(r) % FIXV(b) == 0) r = FIX(FIXV(r) / FIXV(b));
    else {
      if (ISFIX(b) && b == FIX(0) && ISFIX(r)) err("division by zero", r);
      r = mkflo(num_d(r) / num_d(b));
    }
  }
  return r;
}
#define CMP(name, op)                                                         \
  PRIM(name) {                                                                \
    for (int i = 0; i + 1 < argc; i++)                                        \
      if (!numeq2(op, argv[i], argv[i + 1])) return FALSE_V;                  \
    if (argc == 1) num_d(argv[0]);                                            \
    return TRUE_V;                                                            \
  }
CMP(p_lt, I_LT)
CMP(p_gt, I_GT)
CMP(p_le, I_LE)
CMP(p_ge, I_GE)
CMP(p_numeq, I_NUMEQ)

static V intarg(V v) {
  if (ISFIX(v)) return v;
  if (ISFLO(v) && FLO(v) == floor(FLO(v))) return v;
  err("not an integer", v);
}
static V mkint_d(double d, int exact) {
  if (exact && d >= (double)FIX_MIN && d <= (double)FIX_MAX) return FIX((intptr_t)d);
  return mkflo(d);
}
PRIM(p_quotient) {
  UNUSED;
  V a = intarg(argv[0]), b = intarg(argv[1]);
  if (ISFIX(a) && ISFIX(b)) {
    if (b == FIX(0)) err("quotient: division by zero", a);
    return FIX(FIXV(a) / FIXV(b));
  }
  return mkflo(trunc(num_d(a) / num_d(b)));
}
PRIM(p_remainder) {
  UNUSED;
  V a = intarg(argv[0]), b = intarg(argv[1]);
  if (ISFIX(a) && ISFIX(b)) {
    if (b == FIX(0)) err("remainder: division by zero", a);
    return FIX(FIXV(a) % FIXV(b));
  }
  return mkflo(fmod(num_d(a), num_d(b)));
}
PRIM(p_modulo) {
  UNUSED;
  V a = intarg(argv[0]), b = intarg(argv[1]);
  if (ISFIX(a) && ISFIX(b)) {
    if (b == FIX(0)) err("modulo: division by zero", a);
    intptr_t r = FIXV(a) % FIXV(b);
    if (r != 0 && ((r < 0) != (FIXV(b) < 0))) r += FIXV(b);
    return FIX(r);
  }
  double x = num_d(a), y = num_d(b), r = fmod(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return mkflo(r);
}
static intptr_t gcd_i(intptr_t a, intptr_t b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b) { intptr_t t = a % b; a = b; b = t; }
  return a;
}
PRIM(p_gcd) { intptr_t r = 0; for (int i = 0; i < argc; i++) r = gcd_i(r, FIXV(intarg(argv[i]))); return FIX(r); }
PRIM(p_lcm) {
  intptr_t r = 1;
  for (int i = 0; i < argc; i++) { intptr_t x = FIXV(argv[i]); if (x < 0) x = -x; if (!x) return FIX(0); r = r / gcd_i(r, x) * x; }
  return FIX(r);
}
#define FLOFN(name, expr)                                                     \
  PRIM(name) { UNUSED; double x = num_d(argv[0]); return mkflo(expr); }
FLOFN(p_exp, exp(x))
FLOFN(p_sin, sin(x))
FLOFN(p_cos, cos(x))
FLOFN(p_tan, tan(x))
FLOFN(p_asin, asin(x))
FLOFN(p_acos, acos(x))
PRIM(p_log) { return argc == 2 ? mkflo(log(num_d(argv[0])) / log(num_d(argv[1]))) : mkflo(log(num_d(argv[0]))); }
PRIM(p_atan) { return argc == 2 ? mkflo(atan2(num_d(argv[0]), num_d(argv[1]))) : mkflo(atan(num_d(argv[0]))); }
PRIM(p_sqrt) {
  UNUSED;
  if (ISFIX(argv[0]) && FIXV(argv[0]) >= 0) {
    intptr_t x = FIXV(argv[0]), r = (intptr_t)sqrt((double)x);
    while (r * r > x) r--;
    while ((r + 1) * (r + 1) <= x) r++;
    if (r * r == x) return FIX(r);
  }
  return mkflo(sqrt(num_d(argv[0])));
}
PRIM(p_exact_integer_sqrt) {
  UNUSED;
  intptr_t x = FIXV(argv[0]), r = (intptr_t)sqrt((double)x);
  while (r * r > x) r--;
  while ((r + 1) * (r + 1) <= x) r++;
  V vs[2] = {FIX(r), FIX(x - r * r)};
  return values_obj(2, vs);
}
PRIM(p_expt) {
  UNUSED;
  V a = argv[0], b = argv[1];
  if (ISFIX(a) && ISFIX(b) && FIXV(b) >= 0) {
    intptr_t base = FIXV(a), e = FIXV(b), r = 1;
    int ovf = 0;
    while (e-- > 0 && !ovf) ovf = __builtin_mul_overflow(r, base, &r) || r > FIX_MAX || r < FIX_MIN;
    if (!ovf) return FIX(r);
  }
  return mkflo(pow(num_d(a), num_d(b)));
}
#define ROUNDFN(name, fn)                                                     \
  PRIM(name) { UNUSED; if (ISFIX(argv[0])) return argv[0]; return mkflo(fn(num_d(argv[0]))); }
ROUNDFN(p_floor, floor)
ROUNDFN(p_ceiling, ceil)
ROUNDFN(p_truncate, trunc)
ROUNDFN(p_round, nearbyint)
PRIM(p_abs) { UNUSED; V a = argv[0]; if (ISFIX(a)) return FIXV(a) < 0 ? FIX(-FIXV(a)) : a; return mkflo(fabs(num_d(a))); }
PRIM(p_min) {
  V r = argv[0]; int fl = ISFLO(r);
  for (int i = 1; i < argc; i++) { if (ISFLO(argv[i])) fl = 1; if (numeq2(I_LT, argv[i], r)) r = argv[i]; }
  return fl && ISFIX(r) ? mkflo(num_d(r)) : r;
}
PRIM(p_max) {
  V r = argv[0]; int fl = ISFLO(r);
  for (int i = 1; i < argc; i++) { if (ISFLO(argv[i])) fl = 1; if (numeq2(I_GT, argv[i], r)) r = argv[i]; }
  return fl && ISFIX(r) ? mkflo(num_d(r)) : r;
}
PRIM(p_exact) {
  UNUSED;
  if (ISFIX(argv[0])) return argv[0];
  double d = num_d(argv[0]);
  if (d != floor(d)) d = nearbyint(d); /* no rationals: the nearest integer */
  return mkint_d(d, 1);
}
PRIM(p_inexact) { UNUSED; return ISFLO(argv[0]) ? argv[0] : mkflo(num_d(argv[0])); }
PRIM(p_numberp) { UNUSED; return BOOL(isnum(argv[0])); }
PRIM(p_integerp) { UNUSED; V a = argv[0]; return BOOL(ISFIX(a) || (ISFLO(a) && FLO(a) == floor(FLO(a)) && isfinite(FLO(a)))); }
PRIM(p_exact_integerp) { UNUSED; return BOOL(ISFIX(argv[0])); }
PRIM(p_exactp) { UNUSED; num_d(argv[0]); return BOOL(ISFIX(argv[0])); }
PRIM(p_inexactp) { UNUSED; num_d(argv[0]); return BOOL(ISFLO(argv[0])); }
PRIM(p_zerop) { UNUSED; return BOOL(num_d(argv[0]) == 0); }
PRIM(p_positivep) { UNUSED; return BOOL(num_d(argv[0]) > 0); }
PRIM(p_negativep) { UNUSED; return BOOL(num_d(argv[0]) < 0); }
PRIM(p_oddp) { UNUSED; V a = intarg(argv[0]); return BOOL(ISFIX(a) ? (FIXV(a) & 1) : fmod(FLO(a), 2) != 0); }
PRIM(p_evenp) { UNUSED; V a = intarg(argv[0]); return BOOL(ISFIX(a) ? !(FIXV(a) & 1) : fmod(FLO(a), 2) == 0); }
PRIM(p_nanp) { UNUSED; return BOOL(ISFLO(argv[0]) && isnan(FLO(argv[0]))); }
PRIM(p_number_to_string) {
  char b[80];
  V v = argv[0];
  int radix = argc > 1 ? (int)FIXV(argv[1]) : 10;
  if (ISFIX(v) && radix != 10) {
    intptr_t x = FIXV(v);
    int neg = x < 0;
    uintptr_t u = neg ? (uintptr_t)-x : (uintptr_t)x;
    char t[80];
    int i = 79;
    t[i] = 0;
    do { t[--i] = "0123456789abcdefghijklmnopqrstuvwxyz"[u % (uintptr_t)radix]; u /= (uintptr_t)radix; } while (u);
    if (neg) t[--i] = '-';
    return mkstr(t + i, strlen(t + i));
  }
  if (ISFIX(v)) snprintf(b, sizeof b, "%ld", (long)FIXV(v));
  else print_flo(num_d(v), b);
  return mkstr(b, strlen(b));
}
PRIM(p_string_to_number) {
  char *s = strndup(STR(argv[0]), LEN(argv[0]));
  V r = parse_number(s, argc > 1 ? (int)FIXV(argv[1]) : 10);
  free(s);
  return r;
}

/* ------------------------------------------------------------------ */
/* Equivalence, pairs, lists */

static int eqv(V a, V b) {
  if (a == b) return 1;
  if (ISFLO(a) && ISFLO(b)) return FLO(a) == FLO(b);
  if (IS(a, K_STRING) && IS(b, K_STRING) && LEN(a) == 0 && LEN(b) == 0) return 1;
  return 0;
}
static int equal(V a, V b) {
  for (;;) {
    if (eqv(a, b)) return 1;
    if (ISPAIR(a) && ISPAIR(b)) {
      if (!equal(CAR(a), CAR(b))) return 0;
      a = CDR(a);
      b = CDR(b);
      continue;
    }
    if (ISOBJ(a) && ISOBJ(b) && HDR(a) == HDR(b)) {
      int k = KIND(a);
      if (k == K_STRING || k == K_BYTEVECTOR) return memcmp(STR(a), STR(b), LEN(a)) == 0;
      if (k == K_VECTOR) {
        for (size_t i = 0; i < LEN(a); i++)
          if (!equal(VREF(a, i), VREF(b, i))) return 0;
        return 1;
      }
    }
    return 0;
  }
}
PRIM(p_eq) { UNUSED; return BOOL(argv[0] == argv[1]); }
PRIM(p_eqv) { UNUSED; return BOOL(eqv(argv[0], argv[1])); }
PRIM(p_equal) { UNUSED; return BOOL(equal(argv[0], argv[1])); }
PRIM(p_not) { UNUSED; return BOOL(argv[0] == FALSE_V); }
PRIM(p_cons) { UNUSED; return cons(argv[0], argv[1]); }
static V need_pair(V v) { if (!ISPAIR(v)) err("not a pair", v); return v; }
PRIM(p_car) { UNUSED; return CAR(need_pair(argv[0])); }
PRIM(p_cdr) { UNUSED; return CDR(need_pair(argv[0])); }
#define CXR(name, path)                                                       \
  PRIM(name) {                                                                \
    UNUSED;                                                                   \
    V v = argv[0];                                                            \
    static const char path_[] = path;                                         \
    const char *p = path_ + sizeof path_ - 1;                                 \
    while (p-- > path_) v = *p == 'a' ? CAR(need_pair(v)) : CDR(need_pair(v)); \
    return v;                                                                 \
  }
CXR(p_caar, "aa") CXR(p_cadr, "ad") CXR(p_cdar, "da") CXR(p_cddr, "dd")
CXR(p_caaar, "aaa") CXR(p_caadr, "aad") CXR(p_cadar, "ada") CXR(p_caddr, "add")
CXR(p_cdaar, "daa") CXR(p_cdadr, "dad") CXR(p_cddar, "dda") CXR(p_cdddr, "ddd")
CXR(p_cadddr, "addd") CXR(p_cddddr, "dddd")
CXR(p_caaaar, "aaaa")
CXR(p_caaadr, "aaad")
CXR(p_caadar, "aada")
CXR(p_caaddr, "aadd")
CXR(p_cadaar, "adaa")
CXR(p_cadadr, "adad")
CXR(p_caddar, "adda")
CXR(p_cdaaar, "daaa")
CXR(p_cdaadr, "daad")
CXR(p_cdadar, "dada")
CXR(p_cdaddr, "dadd")
CXR(p_cddaar, "ddaa")
CXR(p_cddadr, "ddad")
CXR(p_cdddar, "ddda")
PRIM(p_set_car) { UNUSED; SETCAR(need_pair(argv[0]), argv[1]); return UNSPEC; }
PRIM(p_set_cdr) { UNUSED; SETCDR(need_pair(argv[0]), argv[1]); return UNSPEC; }
PRIM(p_pairp) { UNUSED; return BOOL(ISPAIR(argv[0])); }
PRIM(p_nullp) { UNUSED; return BOOL(argv[0] == NIL); }
PRIM(p_listp) {
  UNUSED;
  V slow = argv[0], fast = argv[0];
  for (;;) {
    if (fast == NIL) return TRUE_V;
    if (!ISPAIR(fast)) return FALSE_V;
    fast = CDR(fast);
    if (fast == NIL) return TRUE_V;
    if (!ISPAIR(fast)) return FALSE_V;
    fast = CDR(fast);
    slow = CDR(slow);
    if (fast == slow) return FALSE_V;
  }
}
PRIM(p_list) {
  V r = NIL;
  for (int i = argc - 1; i >= 0; i--) r = cons(argv[i], r);
  return r;
}
PRIM(p_length) { UNUSED; size_t n = 0; V l = argv[0]; for (; ISPAIR(l); l = CDR(l)) n++; if (l != NIL) err("length: not a list", argv[0]); return FIX(n); }
static V list_copy_onto(V l, V tail) {
  V head = tail, last = 0;
  for (; ISPAIR(l); l = CDR(l)) {
    V c = cons(CAR(l), tail);
    if (last) SETCDR(last, c);
    else head = c;
    last = c;
  }
  return head;
}
PRIM(p_append) {
  if (argc == 0) return NIL;
  V r = argv[argc - 1];
  for (int i = argc - 2; i >= 0; i--) r = list_copy_onto(argv[i], r);
  return r;
}
PRIM(p_reverse) { UNUSED; V r = NIL; for (V l = argv[0]; ISPAIR(l); l = CDR(l)) r = cons(CAR(l), r); return r; }
PRIM(p_list_tail) { UNUSED; V l = argv[0]; for (intptr_t k = FIXV(argv[1]); k > 0; k--) l = CDR(need_pair(l)); return l; }
PRIM(p_list_ref) { UNUSED; V l = argv[0]; for (intptr_t k = FIXV(argv[1]); k > 0; k--) l = CDR(need_pair(l)); return CAR(need_pair(l)); }
PRIM(p_list_copy) { UNUSED; return list_copy_onto(argv[0], NIL); }
PRIM(p_last_pair) { UNUSED; V l = argv[0]; while (ISPAIR(CDR(l))) l = CDR(l); return l; }
PRIM(p_memq) { UNUSED; for (V l = argv[1]; ISPAIR(l); l = CDR(l)) if (CAR(l) == argv[0]) return l; return FALSE_V; }
PRIM(p_memv) { UNUSED; for (V l = argv[1]; ISPAIR(l); l = CDR(l)) if (eqv(CAR(l), argv[0])) return l; return FALSE_V; }
PRIM(p_member) {
  for (V l = argv[1]; ISPAIR(l); l = CDR(l)) {
    if (argc > 2) { V a[2] = {argv[0], CAR(l)}; if (apply_proc(argv[2], 2, a) != FALSE_V) return l; }
    else if (equal(CAR(l), argv[0])) return l;
  }
  return FALSE_V;
}
PRIM(p_assq) { UNUSED; for (V l = argv[1]; ISPAIR(l); l = CDR(l)) if (CAR(CAR(l)) == argv[0]) return CAR(l); return FALSE_V; }
PRIM(p_assv) { UNUSED; for (V l = argv[1]; ISPAIR(l); l = CDR(l)) if (eqv(CAR(CAR(l)), argv[0])) return CAR(l); return FALSE_V; }
PRIM(p_assoc) {
  for (V l = argv[1]; ISPAIR(l); l = CDR(l)) {
    if (argc > 2) { V a[2] = {argv[0], CAR(CAR(l))}; if (apply_proc(argv[2], 2, a) != FALSE_V) return CAR(l); }
    else if (equal(CAR(CAR(l)), argv[0])) return CAR(l);
  }
  return FALSE_V;
}
/* map / for-each over one or more lists */
static V map_gen(int argc, V *argv, int collect) {
  V f = argv[0];
  int nl = argc - 1;
  V ls[nl], a[nl];
  for (int i = 0; i < nl; i++) ls[i] = argv[1 + i];
  V head = NIL, last = 0;
  for (;;) {
    for (int i = 0; i < nl; i++) {
      if (!ISPAIR(ls[i])) return collect ? head : UNSPEC;
      a[i] = CAR(ls[i]);
      ls[i] = CDR(ls[i]);
    }
    V r = apply_proc(f, nl, a);
    if (collect) {
      V c = cons(r, NIL);
      if (last) SETCDR(last, c);
      else head = c;
      last = c;
    }
  }
}
PRIM(p_map) { return map_gen(argc, argv, 1); }
PRIM(p_for_each) { return map_gen(argc, argv, 0); }

/* ------------------------------------------------------------------ */
/* Symbols, chars, strings */

PRIM(p_symbolp) { UNUSED; return BOOL(IS(argv[0], K_SYMBOL)); }
PRIM(p_symbol_to_string) { UNUSED; V s = SYMNAME(argv[0]); return mkstr(STR(s), LEN(s)); }
PRIM(p_string_to_symbol) { UNUSED; return intern_n(STR(argv[0]), LEN(argv[0])); }
PRIM(p_gensym) { UNUSED; return gensym("g"); }
PRIM(p_symbol_count) { UNUSED; return FIX(sym_count()); }
PRIM(p_stringp) { UNUSED; return BOOL(IS(argv[0], K_STRING)); }
PRIM(p_charp) { UNUSED; return BOOL(ISCHR(argv[0])); }
PRIM(p_char_to_integer) { UNUSED; return FIX(CHRV(argv[0])); }
PRIM(p_integer_to_char) { UNUSED; return CHR(FIXV(argv[0])); }
#define CHARCMP(name, expr)                                                   \
  PRIM(name) {                                                                \
    for (int i = 0; i + 1 < argc; i++) {                                      \
      int a = CHRV(argv[i]), b = CHRV(argv[i + 1]);                           \
      if (!(expr)) return FALSE_V;                                            \
    }                                                                         \
    return TRUE_V;                                                            \
  }
CHARCMP(p_char_eq, a == b) CHARCMP(p_char_lt, a < b) CHARCMP(p_char_gt, a > b)
CHARCMP(p_char_le, a <= b) CHARCMP(p_char_ge, a >= b)
CHARCMP(p_char_ci_eq, tolower(a) == tolower(b))
PRIM(p_char_upcase) { UNUSED; return CHR(toupper(CHRV(argv[0]))); }
PRIM(p_char_downcase) { UNUSED; return CHR(tolower(CHRV(argv[0]))); }
PRIM(p_char_alphabeticp) { UNUSED; return BOOL(isalpha(CHRV(argv[0]))); }
PRIM(p_char_numericp) { UNUSED; return BOOL(isdigit(CHRV(argv[0]))); }
PRIM(p_char_whitespacep) { UNUSED; return BOOL(isspace(CHRV(argv[0]))); }
PRIM(p_char_upper_casep) { UNUSED; return BOOL(isupper(CHRV(argv[0]))); }
PRIM(p_char_lower_casep) { UNUSED; return BOOL(islower(CHRV(argv[0]))); }
PRIM(p_digit_value) { UNUSED; int c = CHRV(argv[0]); return isdigit(c) ? FIX(c - '0') : FALSE_V; }

static V need_str(V v) { if (!IS(v, K_STRING)) err("not a string", v); return v; }
PRIM(p_make_string) {
  size_t n = (size_t)FIXV(argv[0]);
  V s = mkstr(NULL, n);
  memset(STR(s), argc > 1 ? CHRV(argv[1]) : ' ', n);
  return s;
}
PRIM(p_string) {
  V s = mkstr(NULL, (size_t)argc);
  for (int i = 0; i < argc; i++) STR(s)[i] = (char)CHRV(argv[i]);
  return s;
}
PRIM(p_string_length) { UNUSED; return FIX(LEN(need_str(argv[0]))); }
PRIM(p_string_ref) {
  UNUSED;
  V s = need_str(argv[0]);
  if (!ISFIX(argv[1]) || (uintptr_t)FIXV(argv[1]) >= LEN(s)) err("string-ref: index out of range", argv[1]);
  return CHR((unsigned char)STR(s)[FIXV(argv[1])]);
}
PRIM(p_string_set) {
  UNUSED;
  V s = need_str(argv[0]);
  if (!ISFIX(argv[1]) || (uintptr_t)FIXV(argv[1]) >= LEN(s)) err("string-set!: index out of range", argv[1]);
  STR(s)[FIXV(argv[1])] = (char)CHRV(argv[2]);
  return UNSPEC;
}
static void range_args(int argc, V *argv, int from, size_t len, size_t *s, size_t *e) {
  *s = argc > from ? (size_t)FIXV(argv[from]) : 0;
  *e = argc > from + 1 ? (size_t)FIXV(argv[from + 1]) : len;
  if (*s > *e || *e > len) err("index out of range", argc > from ? argv[from] : FALSE_V);
}
PRIM(p_substring) {
  V s = need_str(argv[0]);
  size_t a, b;
  range_args(argc, argv, 1, LEN(s), &a, &b);
  return mkstr(STR(s) + a, b - a);
}
PRIM(p_string_append) {
  size_t n = 0;
  for (int i = 0; i < argc; i++) n += LEN(need_str(argv[i]));
  V r = mkstr(NULL, n);
  n = 0;
  for (int i = 0; i < argc; i++) {
    memcpy(STR(r) + n, STR(argv[i]), LEN(argv[i]));
    n += LEN(argv[i]);
  }
  return r;
}
PRIM(p_string_to_list) {
  V s = need_str(argv[0]);
  size_t a, b;
  range_args(argc, argv, 1, LEN(s), &a, &b);
  V r = NIL;
  for (size_t i = b; i > a; i--) r = cons(CHR((unsigned char)STR(s)[i - 1]), r);
  return r;
}
PRIM(p_list_to_string) {
  UNUSED;
  V s = mkstr(NULL, list_len(argv[0]));
  size_t i = 0;
  for (V l = argv[0]; ISPAIR(l); l = CDR(l)) STR(s)[i++] = (char)CHRV(CAR(l));
  return s;
}
PRIM(p_string_copy_x) {
  V to = argv[0], from = argv[2];
  size_t at = (size_t)FIXV(argv[1]), a, b;
  range_args(argc, argv, 3, LEN(from), &a, &b);
  if (at + (b - a) > LEN(to)) err("string-copy!: out of range", argv[1]);
  memmove(STR(to) + at, STR(from) + a, b - a);
  return UNSPEC;
}
PRIM(p_string_fill) { UNUSED; memset(STR(argv[0]), CHRV(argv[1]), LEN(argv[0])); return UNSPEC; }
static int strcmp2(V a, V b, int ci) {
  size_t n = LEN(a) < LEN(b) ? LEN(a) : LEN(b);
  for (size_t i = 0; i < n; i++) {
    int x = (unsigned char)STR(a)[i], y = (unsigned char)STR(b)[i];
    if (ci) { x = tolower(x); y = tolower(y); }
    if (x != y) return x - y;
  }
  return (int)LEN(a) - (int)LEN(b);
}
#define STRCMP(name, ci, expr)                                                \
  PRIM(name) {                                                                \
    for (int i = 0; i + 1 < argc; i++) {                                      \
      int c = strcmp2(need_str(argv[i]), need_str(argv[i + 1]), ci);         \
      if (!(expr)) return FALSE_V;                                            \
    }                                                                         \
    return TRUE_V;                                                            \
  }
STRCMP(p_string_eq, 0, c == 0) STRCMP(p_string_lt, 0, c < 0) STRCMP(p_string_gt, 0, c > 0)
STRCMP(p_string_le, 0, c <= 0) STRCMP(p_string_ge, 0, c >= 0) STRCMP(p_string_ci_eq, 1, c == 0)
PRIM(p_string_upcase) { UNUSED; V s = mkstr(STR(argv[0]), LEN(argv[0])); for (size_t i = 0; i < LEN(s); i++) STR(s)[i] = (char)toupper(STR(s)[i]); return s; }
PRIM(p_string_downcase) { UNUSED; V s = mkstr(STR(argv[0]), LEN(argv[0])); for (size_t i = 0; i < LEN(s); i++) STR(s)[i] = (char)tolower(STR(s)[i]); return s; }
PRIM(p_string_for_each) {
  UNUSED;
  V s = argv[1];
  for (size_t i = 0; i < LEN(s); i++) { V c = CHR((unsigned char)STR(s)[i]); apply_proc(argv[0], 1, &c); }
  return UNSPEC;
}

/* ------------------------------------------------------------------ */
/* Vectors, bytevectors */

static V need_vec(V v) { if (!IS(v, K_VECTOR)) err("not a vector", v); return v; }
static size_t need_idx(V i, size_t len) {
  if (!ISFIX(i) || (uintptr_t)FIXV(i) >= len) err("index out of range", i);
  return (size_t)FIXV(i);
}
PRIM(p_vectorp) { UNUSED; return BOOL(IS(argv[0], K_VECTOR)); }
PRIM(p_make_vector) {
  if (!ISFIX(argv[0]) || FIXV(argv[0]) < 0) err("make-vector: bad length", argv[0]);
  return mkvec((size_t)FIXV(argv[0]), argc > 1 ? argv[1] : FALSE_V);
}
PRIM(p_vector) {
  V v = mkvec((size_t)argc, 0);
  for (int i = 0; i < argc; i++) VSET(v, i, argv[i]);
  return v;
}
PRIM(p_vector_length) { UNUSED; return FIX(LEN(need_vec(argv[0]))); }
PRIM(p_vector_ref) { UNUSED; V v = need_vec(argv[0]); return VREF(v, need_idx(argv[1], LEN(v))); }
PRIM(p_vector_set) { UNUSED; V v = need_vec(argv[0]); VSET(v, need_idx(argv[1], LEN(v)), argv[2]); return UNSPEC; }
PRIM(p_vector_to_list) {
  V v = need_vec(argv[0]);
  size_t a, b;
  range_args(argc, argv, 1, LEN(v), &a, &b);
  V r = NIL;
  for (size_t i = b; i > a; i--) r = cons(VREF(v, i - 1), r);
  return r;
}
PRIM(p_list_to_vector) {
  UNUSED;
  V v = mkvec(list_len(argv[0]), 0);
  size_t i = 0;
  for (V l = argv[0]; ISPAIR(l); l = CDR(l)) VSET(v, i++, CAR(l));
  return v;
}
PRIM(p_vector_fill) {
  V v = need_vec(argv[0]);
  size_t a, b;
  range_args(argc, argv, 2, LEN(v), &a, &b);
  for (size_t i = a; i < b; i++) VSET(v, i, argv[1]);
  return UNSPEC;
}
PRIM(p_vector_copy) {
  V v = need_vec(argv[0]);
  size_t a, b;
  range_args(argc, argv, 1, LEN(v), &a, &b);
  V r = mkvec(b - a, 0);
  for (size_t i = a; i < b; i++) VSET(r, i - a, VREF(v, i));
  return r;
}
PRIM(p_vector_copy_x) {
  V to = need_vec(argv[0]), from = need_vec(argv[2]);
  size_t at = (size_t)FIXV(argv[1]), a, b;
  range_args(argc, argv, 3, LEN(from), &a, &b);
  if (at + (b - a) > LEN(to)) err("vector-copy!: out of range", argv[1]);
  if (at <= a) for (size_t i = a; i < b; i++) VSET(to, at + i - a, VREF(from, i));
  else for (size_t i = b; i > a; i--) VSET(to, at + i - 1 - a, VREF(from, i - 1));
  return UNSPEC;
}
PRIM(p_vector_map) {
  V f = argv[0], v = need_vec(argv[1]);
  (void)argc;
  V r = mkvec(LEN(v), 0);
  for (size_t i = 0; i < LEN(v); i++) { V x = VREF(v, i); V y = apply_proc(f, 1, &x); VSET(r, i, y); }
  return r;
}
PRIM(p_vector_for_each) {
  UNUSED;
  V v = need_vec(argv[1]);
  for (size_t i = 0; i < LEN(v); i++) { V x = VREF(v, i); apply_proc(argv[0], 1, &x); }
  return UNSPEC;
}
PRIM(p_vector_append) {
  size_t n = 0;
  for (int i = 0; i < argc; i++) n += LEN(need_vec(argv[i]));
  V r = mkvec(n, 0);
  n = 0;
  for (int i = 0; i < argc; i++) for (size_t j = 0; j < LEN(argv[i]); j++) VSET(r, n++, VREF(argv[i], j));
  return r;
}
PRIM(p_bytevectorp) { UNUSED; return BOOL(IS(argv[0], K_BYTEVECTOR)); }
PRIM(p_make_bytevector) {
  V b = mkbv((size_t)FIXV(argv[0]));
  if (argc > 1) memset(STR(b), (int)FIXV(argv[1]), LEN(b));
  return b;
}
PRIM(p_bytevector) { V b = mkbv((size_t)argc); for (int i = 0; i < argc; i++) ((unsigned char *)STR(b))[i] = (unsigned char)FIXV(argv[i]); return b; }
PRIM(p_bytevector_length) { UNUSED; return FIX(LEN(argv[0])); }
PRIM(p_bytevector_u8_ref) { UNUSED; V b = argv[0]; return FIX(((unsigned char *)STR(b))[need_idx(argv[1], LEN(b))]); }
PRIM(p_bytevector_u8_set) { UNUSED; V b = argv[0]; ((unsigned char *)STR(b))[need_idx(argv[1], LEN(b))] = (unsigned char)FIXV(argv[2]); return UNSPEC; }
PRIM(p_bytevector_copy) {
  V v = argv[0];
  size_t a, b;
  range_args(argc, argv, 1, LEN(v), &a, &b);
  V r = mkbv(b - a);
  memcpy(STR(r), STR(v) + a, b - a);
  return r;
}
PRIM(p_utf8_to_string) { V v = argv[0]; size_t a, b; range_args(argc, argv, 1, LEN(v), &a, &b); return mkstr(STR(v) + a, b - a); }
PRIM(p_string_to_utf8) { V v = argv[0]; size_t a, b; range_args(argc, argv, 1, LEN(v), &a, &b); V r = mkbv(b - a); memcpy(STR(r), STR(v) + a, b - a); return r; }
