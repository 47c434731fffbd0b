/* fhscheme, the evaluator: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
/* ------------------------------------------------------------------ */
/* Evaluator */

#define CLO_LAM(c) ((Lambda *)OBJ(c)[1])
#define CLO_ENV(c) (OBJ(c)[2])

static V mkclosure(Lambda *L, V env) {
  V *p = alloc_refs(3);
  p[0] = MKHDR(K_CLOSURE, 2);
  INIT(p, &p[1], (V)L);
  INIT(p, &p[2], env);
  return (V)p;
}

static _Noreturn void arity_error(V f, int argc) {
  (void)argc;
  err("wrong number of arguments to", f);
}

static V make_frame(V f, int argc, V *argv) {
  Lambda *L = CLO_LAM(f);
  if (argc != L->nreq && !(L->rest && argc > L->nreq)) {
    if (!(L->rest && argc == L->nreq)) arity_error(L->name != FALSE_V ? L->name : f, argc);
  }
  V *fr = alloc_refs(2 + (size_t)L->fsize);
  fr[0] = MKHDR(K_FRAME, 1 + L->fsize);
  INIT(fr, &fr[1], CLO_ENV(f));
  for (int i = 0; i < L->nreq; i++) INIT(fr, &fr[2 + i], argv[i]);
  if (L->rest) { /* cons allocates: the frame's last store is an ordinary one */
    V rest = NIL;
    for (int i = argc - 1; i >= L->nreq; i--) rest = cons(argv[i], rest);
    WB(fr, &fr[2 + L->nreq], rest);
  }
  return (V)fr;
}

/* A frame on the C stack, for a lambda whose body creates no closure
 * (nothing can hold the frame after the call returns or tail-calls).  The
 * stack scan finds the values in it; stores into it need no barrier. */
enum { SBUF = 16 };
#define STACK_FRAME_HDR MKHDR(K_FRAME, 0xffffff)
static V stack_frame(V *sb, V f, int argc, V *argv) {
  Lambda *L = CLO_LAM(f);
  if (argc != L->nreq && !(L->rest && argc >= L->nreq)) arity_error(L->name != FALSE_V ? L->name : f, argc);
  sb[0] = STACK_FRAME_HDR;
  sb[1] = CLO_ENV(f);
  for (int i = 0; i < L->nreq; i++) sb[2 + i] = argv[i];
  for (int i = L->nreq; i < L->fsize; i++) sb[2 + i] = UNBOUND;
  if (L->rest) {
    V rest = NIL;
    for (int i = argc - 1; i >= L->nreq; i--) rest = cons(argv[i], rest);
    sb[2 + L->nreq] = rest;
  }
  return (V)sb;
}
#define ENTER(f, k, argv)                                                      \
  do {                                                                         \
    Lambda *L_ = CLO_LAM(f);                                                   \
    if (polling) SAFEPOINT();                                                  \
    env = L_->noescape && L_->fsize + 2 <= SBUF ? stack_frame(sbuf, f, k, argv) \
                                                : make_frame(f, k, argv);      \
    n = L_->body;                                                              \
  } while (0)

static _Noreturn void throw_to(V k, int argc, V *argv);
static V values_obj(int argc, V *argv);
static V arith2(int op, V a, V b);
static int numeq2(int op, V a, V b);
static V guard_run(Node *n, V env);
static V guardian_call(V g, int argc, V *argv);

static V call_prim(Prim *p, int argc, V *argv) {
  const struct pdef *d = pinfo(p);
  if (argc < d->min || (d->max >= 0 && argc > d->max)) arity_error((V)p, argc);
  return d->fn(argc, argv);
}

static V eval(Node *n, V env) {
  V sbuf[SBUF];
top:
  switch (n->op) {
  case OP_CONST: return n->v;
  case OP_LREF0: {
    V v = OBJ(env)[2 + n->idx];
    if (__builtin_expect(v == UNBOUND, 0)) err("variable used before its definition", FALSE_V);
    return v;
  }
  case OP_LREF1: {
    V v = OBJ(OBJ(env)[1])[2 + n->idx];
    if (__builtin_expect(v == UNBOUND, 0)) err("variable used before its definition", FALSE_V);
    return v;
  }
  case OP_LREF: {
    V e = env;
    for (int d = n->depth; d > 0; d--) e = OBJ(e)[1];
    V v = OBJ(e)[2 + n->idx];
    if (__builtin_expect(v == UNBOUND, 0)) err("variable used before its definition", FALSE_V);
    return v;
  }
  case OP_GREF: {
    V v = SYMVAL(n->v);
    if (__builtin_expect(v == UNBOUND, 0)) err("unbound variable", n->v);
    return v;
  }
  case OP_LSET: {
    V v = eval(n->a, env);
    V e = env;
    for (int d = n->depth; d > 0; d--) e = OBJ(e)[1];
    if (OBJ(e)[0] == STACK_FRAME_HDR) OBJ(e)[2 + n->idx] = v;
    else WB(OBJ(e), &OBJ(e)[2 + n->idx], v);
    return UNSPEC;
  }
  case OP_GSET:
    if (SYMVAL(n->v) == UNBOUND) err("set! of an unbound variable", n->v);
    /* fall through */
  case OP_GDEF: {
    V v = eval(n->a, env);
    WB(OBJ(n->v), &SYMVAL(n->v), v);
    return n->op == OP_GDEF ? n->v : UNSPEC;
  }
  case OP_IF:
    n = eval(n->a, env) != FALSE_V ? n->b : n->c;
    goto top;
  case OP_SEQ:
    for (int i = 0; i < n->n - 1; i++) eval(KID(n, i), env);
    n = KID(n, n->n - 1);
    goto top;
  case OP_AND:
    for (int i = 0; i < n->n - 1; i++)
      if (eval(KID(n, i), env) == FALSE_V) return FALSE_V;
    n = KID(n, n->n - 1);
    goto top;
  case OP_OR:
    for (int i = 0; i < n->n - 1; i++) {
      V v = eval(KID(n, i), env);
      if (v != FALSE_V) return v;
    }
    n = KID(n, n->n - 1);
    goto top;
  case OP_LAMBDA: return mkclosure(NLAM(n), env);
  case OP_LET: {
    int k = n->n;
    V *fr;
    if (k == 0) {
      fr = alloc_refs(2 + (size_t)n->idx);
    } else {
      V argv[k];
      for (int i = 0; i < k; i++) argv[i] = eval(KID(n, i), env);
      fr = alloc_refs(2 + (size_t)n->idx);
      for (int i = 0; i < k; i++) INIT(fr, &fr[2 + i], argv[i]);
    }
    fr[0] = MKHDR(K_FRAME, 1 + n->idx);
    INIT(fr, &fr[1], env);
    env = (V)fr;
    n = n->a;
    goto top;
  }
  case OP_LETREC: {
    V *fr = alloc_refs(2 + (size_t)n->idx);
    fr[0] = MKHDR(K_FRAME, 1 + n->idx);
    INIT(fr, &fr[1], env);
    env = (V)fr;
    for (int i = 0; i < n->n; i++) { /* eval allocates: ordinary stores */
      V v = eval(KID(n, i), env);
      WB(fr, &fr[2 + i], v);
    }
    n = n->a;
    goto top;
  }
  case OP_GUARD: return guard_run(n, env);
  case OP_PCALL: {
    int k = n->n;
    if (k == 1) {
      V a = eval(KID(n, 0), env);
      if (n->v && SYMVAL(n->v) != (V)n->prim) goto general1;
      switch (n->inl) {
      case I_CAR: if (ISPAIR(a)) return CAR(a); break;
      case I_CDR: if (ISPAIR(a)) return CDR(a); break;
      case I_CADR: if (ISPAIR(a) && ISPAIR(CDR(a))) return CAR(CDR(a)); break;
      case I_CDDR: if (ISPAIR(a) && ISPAIR(CDR(a))) return CDR(CDR(a)); break;
      case I_CAAR: if (ISPAIR(a) && ISPAIR(CAR(a))) return CAR(CAR(a)); break;
      case I_CDAR: if (ISPAIR(a) && ISPAIR(CAR(a))) return CDR(CAR(a)); break;
      case I_NULLP: return BOOL(a == NIL);
      case I_PAIRP: return BOOL(ISPAIR(a));
      case I_NOT: return BOOL(a == FALSE_V);
      case I_ZEROP: if (ISFIX(a)) return BOOL(a == FIX(0)); break;
      case I_VLEN: if (IS(a, K_VECTOR)) return FIX(LEN(a)); break;
      default: break;
      }
    general1:;
      V f = n->v ? SYMVAL(n->v) : (V)n->prim;
      V argv[1] = {a};
      if (IS(f, K_PRIM)) return call_prim((Prim *)f, 1, argv);
      if (IS(f, K_CLOSURE)) {
        ENTER(f, 1, argv);
        goto top;
      }
      return apply_proc(f, 1, argv);
    }
    if (k == 2) {
      V a = eval(KID(n, 0), env);
      V b = eval(KID(n, 1), env);
      if (n->v && SYMVAL(n->v) != (V)n->prim) goto general2;
      switch (n->inl) {
      case I_CONS: return cons(a, b);
      case I_EQ: return BOOL(a == b);
      case I_EQV:
        if (a == b) return TRUE_V;
        if (!ISFLO(a)) return FALSE_V;
        break;
      case I_ADD:
        if (ISFIX(a) && ISFIX(b)) {
          intptr_t r;
          if (!__builtin_add_overflow((intptr_t)a, (intptr_t)(b - 1), &r)) return (V)r;
        }
        return arith2(I_ADD, a, b);
      case I_SUB:
        if (ISFIX(a) && ISFIX(b)) {
          intptr_t r;
          if (!__builtin_sub_overflow((intptr_t)a, (intptr_t)(b - 1), &r)) return (V)r;
        }
        return arith2(I_SUB, a, b);
      case I_MUL: return arith2(I_MUL, a, b);
      case I_LT: if (ISFIX(a) && ISFIX(b)) return BOOL((intptr_t)a < (intptr_t)b); return BOOL(numeq2(I_LT, a, b));
      case I_GT: if (ISFIX(a) && ISFIX(b)) return BOOL((intptr_t)a > (intptr_t)b); return BOOL(numeq2(I_GT, a, b));
      case I_LE: if (ISFIX(a) && ISFIX(b)) return BOOL((intptr_t)a <= (intptr_t)b); return BOOL(numeq2(I_LE, a, b));
      case I_GE: if (ISFIX(a) && ISFIX(b)) return BOOL((intptr_t)a >= (intptr_t)b); return BOOL(numeq2(I_GE, a, b));
      case I_NUMEQ: if (ISFIX(a) && ISFIX(b)) return BOOL(a == b); return BOOL(numeq2(I_NUMEQ, a, b));
      case I_CHAREQ: if (ISCHR(a) && ISCHR(b)) return BOOL(a == b); break;
      case I_VREF:
        if (IS(a, K_VECTOR) && ISFIX(b) && (uintptr_t)FIXV(b) < LEN(a)) return VREF(a, FIXV(b));
        break;
      case I_SREF:
        if (IS(a, K_STRING) && ISFIX(b) && (uintptr_t)FIXV(b) < LEN(a))
          return CHR((unsigned char)STR(a)[FIXV(b)]);
        break;
      case I_SETCAR: if (ISPAIR(a)) { SETCAR(a, b); return UNSPEC; } break;
      case I_SETCDR: if (ISPAIR(a)) { SETCDR(a, b); return UNSPEC; } break;
      default: break;
      }
    general2:;
      V f = n->v ? SYMVAL(n->v) : (V)n->prim;
      V argv[2] = {a, b};
      if (IS(f, K_PRIM)) return call_prim((Prim *)f, 2, argv);
      if (IS(f, K_CLOSURE)) {
        ENTER(f, 2, argv);
        goto top;
      }
      return apply_proc(f, 2, argv);
    }
    if (k == 3 && n->inl == I_VSET) {
      V a = eval(KID(n, 0), env);
      V b = eval(KID(n, 1), env);
      V c = eval(KID(n, 2), env);
      if ((!n->v || SYMVAL(n->v) == (V)n->prim) && IS(a, K_VECTOR) && ISFIX(b) &&
          (uintptr_t)FIXV(b) < LEN(a)) {
        VSET(a, FIXV(b), c);
        return UNSPEC;
      }
      V f = n->v ? SYMVAL(n->v) : (V)n->prim;
      V argv[3] = {a, b, c};
      return apply_proc(f, 3, argv);
    }
  }
    __attribute__((fallthrough)); /* a general call */
  case OP_CALL: {
    V f = eval(n->a, env);
    int k = n->n;
    V argv[k ? k : 1];
    for (int i = 0; i < k; i++) argv[i] = eval(KID(n, i), env);
    if (ISOBJ(f)) {
      int kind = KIND(f);
      if (kind == K_CLOSURE) {
        ENTER(f, k, argv);
        goto top;
      }
      if (kind == K_PRIM) {
        Prim *p = (Prim *)f;
        if (p == P_apply && k >= 2) { /* apply in tail position stays a tail call */
          V lst = argv[k - 1];
          size_t m = (size_t)k - 2 + list_len(lst);
          V args[m ? m : 1];
          for (int i = 1; i < k - 1; i++) args[i - 1] = argv[i];
          for (size_t i = (size_t)k - 2; i < m; i++, lst = CDR(lst)) args[i] = CAR(lst);
          V g = argv[0];
          if (IS(g, K_CLOSURE)) {
            ENTER(g, (int)m, args);
            goto top;
          }
          return apply_proc(g, (int)m, args);
        }
        return call_prim(p, k, argv);
      }
    }
    return apply_proc(f, k, argv);
  }
  }
  return UNSPEC;
}

static V apply_proc(V f, int argc, V *argv) {
  if (ISOBJ(f)) {
    switch (KIND(f)) {
    case K_CLOSURE: {
      Lambda *L = CLO_LAM(f);
      if (polling) SAFEPOINT();
      if (L->noescape && L->fsize + 2 <= SBUF) {
        V sb[SBUF];
        V r = eval(L->body, stack_frame(sb, f, argc, argv));
        return r;
      }
      return eval(L->body, make_frame(f, argc, argv));
    }
    case K_PRIM: {
      Prim *p = (Prim *)f;
      if (p == P_apply) {
        if (argc < 2) arity_error(f, argc);
        V lst = argv[argc - 1];
        size_t m = (size_t)argc - 2 + list_len(lst);
        V args[m ? m : 1];
        for (int i = 1; i < argc - 1; i++) args[i - 1] = argv[i];
        for (size_t i = (size_t)argc - 2; i < m; i++, lst = CDR(lst)) args[i] = CAR(lst);
        return apply_proc(argv[0], (int)m, args);
      }
      return call_prim(p, argc, argv);
    }
    case K_CONT: throw_to(f, argc, argv);
    case K_PARAM: if (argc == 0) return VREF(f, 0); break;
    case K_GUARDIAN: if (argc <= 1) return guardian_call(f, argc, argv); break;
    default: break;
    }
  }
  err("not a procedure", f);
}

/* Escape-only continuations: a K_CONT [catch, winders, handlers, active]. */
static _Noreturn void throw_to(V k, int argc, V *argv) {
  if (VREF(k, 3) != FIX(1))
    err("continuation called outside its dynamic extent (fhscheme's call/cc is escape-only)", k);
  throw_val = argc == 1 ? argv[0] : values_obj(argc, argv);
  unwind_to(VREF(k, 1));
  handlers = VREF(k, 2);
  longjmp(CONT_CATCH(k)->jb, 1);
}

static V callcc_run(V f) {
  Catch c;
  V k = mkmarker(&c, winders);
  if (setjmp(c.jb)) {
    V r = throw_val;
    throw_val = UNSPEC;
    OBJ(k)[4] = FIX(0);
    return r;
  }
  V r = apply_proc(f, 1, &k);
  OBJ(k)[4] = FIX(0);
  return r;
}

static V guard_run(Node *n, V env) {
  Catch c;
  V saved = handlers;
  V m = mkmarker(&c, winders);
  if (setjmp(c.jb) == 0) {
    handlers = cons(m, handlers);
    V r = eval(n->a, env);
    handlers = saved;
    OBJ(m)[4] = FIX(0);
    return r;
  }
  handlers = saved;
  OBJ(m)[4] = FIX(0);
  V *fr = alloc_refs(3);
  fr[0] = MKHDR(K_FRAME, 2);
  INIT(fr, &fr[1], env);
  INIT(fr, &fr[2], throw_val);
  throw_val = UNSPEC;
  return eval(n->b, (V)fr);
}
