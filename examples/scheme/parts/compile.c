/* fhscheme, the compiler: s-expressions to nodes: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
/* ------------------------------------------------------------------ */
/* Compiler: s-expressions to nodes */

enum {
  OP_CONST, OP_LREF0, OP_LREF1, OP_LREF, OP_GREF, OP_LSET, OP_GSET, OP_GDEF, OP_IF,
  OP_SEQ, OP_LAMBDA, OP_CALL, OP_PCALL, OP_LET, OP_LETREC, OP_AND, OP_OR, OP_GUARD
};
enum {
  I_NONE, I_CAR, I_CDR, I_CONS, I_ADD, I_SUB, I_MUL, I_LT, I_GT, I_LE, I_GE, I_NUMEQ,
  I_EQ, I_NULLP, I_PAIRP, I_NOT, I_VREF, I_VSET, I_ZEROP, I_CADR, I_CDDR, I_SETCAR,
  I_SETCDR, I_EQV, I_VLEN, I_CAAR, I_CDAR, I_SREF, I_CHAREQ
};

/* A node's size depends on its op: fields are ordered so that each op
 * uses a prefix (leaves and lambdas 4 words, calls 7, if 9), which halves
 * the code's footprint in the heap and in images. */
struct Node {
  V hdr;
  uint8_t tag1, op, inl, pad1; /* tag1 = 1: an odd word; inl: the primitive's inline opcode (OP_PCALL) */
  int32_t n;
  uint16_t tag2, depth; /* tag2 = 1 */
  int32_t idx;
  V v;      /* constant, global symbol, or the Lambda of an OP_LAMBDA */
  Node *a;
  V kids;   /* a vector of nodes */
  Prim *prim;
  Node *b, *c;
};
#define NLAM(n) ((Lambda *)(n)->v)
static size_t node_words(int op) {
  switch (op) {
  case OP_CONST: case OP_LREF0: case OP_LREF1: case OP_LREF: case OP_GREF: case OP_LAMBDA:
    return offsetof(Node, a) / sizeof(V);
  case OP_LSET: case OP_GSET: case OP_GDEF: return offsetof(Node, kids) / sizeof(V);
  case OP_SEQ: case OP_AND: case OP_OR: case OP_LET: case OP_LETREC: return offsetof(Node, prim) / sizeof(V);
  case OP_CALL: case OP_PCALL: return offsetof(Node, b) / sizeof(V);
  default: return sizeof(Node) / sizeof(V); /* OP_IF, OP_GUARD */
  }
}
#define KID(n, i) ((Node *)OBJ((n)->kids)[1 + (i)])
/* Stores of references into code objects go through the barrier. */
#define NSET(obj, field, x) WB((obj), (V *)&(obj)->field, (V)(x))
#define KSET(n, i, x) WB(OBJ((n)->kids), &OBJ((n)->kids)[1 + (i)], (V)(x))

typedef struct Scope {
  V *names;
  int n, cap;
  struct Scope *parent;
} Scope;

static Node *mknode(int op) {
  size_t w = node_words(op);
  Node *n = alloc_nonmoving(NM_REFS, w);
  n->hdr = MKHDR(K_NODE, w - 1);
  n->tag1 = 1;
  n->tag2 = 1;
  n->op = (uint8_t)op;
  return n;
}

static void mkkids(Node *n, size_t k) {
  V *p = alloc_nonmoving(NM_REFS, 1 + (k ? k : 1));
  p[0] = MKHDR(K_VECTOR, k ? k : 1);
  NSET(n, kids, p);
}

static int scope_add(Scope *sc, V name) {
  for (int i = 0; i < sc->n; i++)
    if (sc->names[i] == name) return i;
  if (sc->n == sc->cap) {
    sc->cap = sc->cap ? sc->cap * 2 : 8;
    sc->names = realloc(sc->names, sc->cap * sizeof(V));
    if (!sc->names) oom();
  }
  sc->names[sc->n] = name;
  return sc->n++;
}

static int lookup(Scope *sc, V name, int *depth, int *idx) {
  for (int d = 0; sc; sc = sc->parent, d++)
    for (int i = sc->n - 1; i >= 0; i--)
      if (sc->names[i] == name) {
        *depth = d;
        *idx = i;
        return 1;
      }
  return 0;
}

/* Copy a quoted datum into the non-moving space and keep it alive: nodes
 * hold it directly for ever. */
static V freeze(V x) {
  if (ISPAIR(x)) {
    V a = freeze(CAR(x)), d = freeze(CDR(x));
    V *p = alloc_nonmoving(NM_PAIR, 2);
    p[0] = a;
    p[1] = d;
    return (V)p | 2;
  }
  if (ISFLO(x)) {
    V *p = alloc_nonmoving(NM_FLO, 1);
    p[0] = OBJ(x - 4)[0];
    return (V)p | 4;
  }
  if (IS(x, K_STRING) || IS(x, K_BYTEVECTOR)) {
    size_t n = LEN(x) + (IS(x, K_STRING) ? 1 : 0);
    V *p = alloc_nonmoving(NM_BYTES, 1 + (n + 7) / 8);
    memcpy(p, OBJ(x), sizeof(V) + n);
    return (V)p;
  }
  if (IS(x, K_VECTOR)) {
    size_t n = LEN(x);
    V *p = alloc_nonmoving(NM_REFS, 1 + n);
    p[0] = HDR(x);
    for (size_t i = 0; i < n; i++) p[1 + i] = freeze(VREF(x, i));
    return (V)p;
  }
  return x;
}

static V S_define, S_lambda, S_if, S_set, S_begin, S_let, S_letstar, S_letrec, S_letrecstar,
    S_cond, S_case, S_and, S_or, S_when, S_unless, S_do, S_else, S_arrow, S_drt, S_import,
    S_delay, S_delay_force, S_make_promise, S_guard, S_let_values, S_letstar_values,
    S_define_values, S_case_lambda, S_parameterize, S_assert, S_define_syntax, S_named_lambda;

static Prim *P_cons, *P_list, *P_append, *P_list2vec, *P_memv, *P_raise_cont, *P_record_new,
    *P_record_p, *P_record_ref, *P_record_set, *P_make_rtd, *P_make_promise, *P_cwv,
    *P_values, *P_error, *P_apply, *P_not;

static Node *comp(V x, Scope *sc);
static int makes_closure(Node *n);
static Node *comp_body(V body, Scope *sc);

static size_t list_len(V l) {
  size_t n = 0;
  for (; ISPAIR(l); l = CDR(l)) n++;
  return n;
}
#define L1(a) cons((a), NIL)
#define L2(a, b) cons((a), L1(b))
#define L3(a, b, c) cons((a), L2(b, c))
#define L4(a, b, c, d) cons((a), L3(b, c, d))
static V cadr(V x) { return CAR(CDR(x)); }
static V cddr(V x) { return CDR(CDR(x)); }

static V gensym(const char *base) {
  char b[64];
  snprintf(b, sizeof b, "%%%s%d", base, ++gensym_counter);
  return intern(b);
}

static Node *comp_const(V v) {
  Node *n = mknode(OP_CONST);
  v = freeze(v);
  NSET(n, v, v);
  keep(v);
  return n;
}

static Node *comp_seq(V forms, Scope *sc) {
  size_t k = list_len(forms);
  if (k == 0) return comp_const(UNSPEC);
  if (k == 1) return comp(CAR(forms), sc);
  Node *n = mknode(OP_SEQ);
  n->n = (int)k;
  mkkids(n, k);
  for (size_t i = 0; i < k; i++, forms = CDR(forms)) KSET(n, i, comp(CAR(forms), sc));
  return n;
}

static Lambda *comp_lambda(V params, V body, Scope *parent, V name) {
  Scope *sc = calloc(1, sizeof *sc);
  sc->parent = parent;
  Lambda *L = alloc_nonmoving(NM_REFS, sizeof(Lambda) / sizeof(V));
  L->hdr = MKHDR(K_LAMBDA, sizeof(Lambda) / sizeof(V) - 1);
  L->tag1 = 1;
  L->tag2 = 1;
  for (; ISPAIR(params); params = CDR(params)) {
    scope_add(sc, CAR(params));
    L->nreq++;
  }
  if (params != NIL) {
    scope_add(sc, params);
    L->rest = 1;
  }
  NSET(L, name, name);
  keep(name);
  NSET(L, body, comp_body(body, sc));
  L->fsize = sc->n;
  L->noescape = !makes_closure(L->body);
  return L;
}

static V expand_drt(V x);

static int makes_closure(Node *n) {
  if (!n) return 0;
  if (n->op == OP_LAMBDA) return 1;
  size_t w = node_words(n->op);
  if (w > offsetof(Node, a) / sizeof(V) && makes_closure(n->a)) return 1;
  if (w > offsetof(Node, b) / sizeof(V) && (makes_closure(n->b) || makes_closure(n->c))) return 1;
  if (w > offsetof(Node, kids) / sizeof(V) && n->kids)
    for (int i = 0; i < n->n; i++)
      if (makes_closure(KID(n, i))) return 1;
  return 0;
}

/* Internal definitions become slots of the enclosing frame. */
static void scan_defines(V body, Scope *sc) {
  for (; ISPAIR(body); body = CDR(body)) {
    V f = CAR(body);
    if (!ISPAIR(f) || !IS(CAR(f), K_SYMBOL)) continue;
    int d, i;
    if (lookup(sc, CAR(f), &d, &i)) continue;
    if (CAR(f) == S_define) {
      V t = cadr(f);
      while (ISPAIR(t)) t = CAR(t); /* curried define */
      scope_add(sc, t);
    } else if (CAR(f) == S_begin) {
      scan_defines(CDR(f), sc);
    } else if (CAR(f) == S_drt) {
      scan_defines(CDR(expand_drt(f)), sc);
    } else if (CAR(f) == S_define_values) {
      V t = cadr(f);
      for (; ISPAIR(t); t = CDR(t)) scope_add(sc, CAR(t));
      if (t != NIL) scope_add(sc, t);
    }
  }
}

static Node *comp_body(V body, Scope *sc) {
  scan_defines(body, sc);
  return comp_seq(body, sc);
}

static Node *comp_set(V name, Node *val, Scope *sc, int define) {
  int d, i;
  Node *n;
  if (sc && lookup(sc, name, &d, &i)) {
    n = mknode(OP_LSET);
    n->depth = d;
    n->idx = i;
  } else {
    n = mknode(define ? OP_GDEF : OP_GSET);
    NSET(n, v, name);
    keep(name);
  }
  NSET(n, a, val);
  return n;
}

static V pcall(Prim *p, V args) { return cons((V)p, args); }

static V qq(V x, int depth) {
  if (ISPAIR(x)) {
    if (CAR(x) == sym_unquote) {
      if (depth == 1) return cadr(x);
      return pcall(P_list, L2(L2(sym_quote, sym_unquote), qq(cadr(x), depth - 1)));
    }
    if (CAR(x) == sym_quasiquote)
      return pcall(P_list, L2(L2(sym_quote, sym_quasiquote), qq(cadr(x), depth + 1)));
    if (ISPAIR(CAR(x)) && CAR(CAR(x)) == sym_unquote_splicing && depth == 1)
      return pcall(P_append, L2(cadr(CAR(x)), qq(CDR(x), depth)));
    return pcall(P_cons, L2(qq(CAR(x), depth), qq(CDR(x), depth)));
  }
  if (IS(x, K_VECTOR)) {
    V l = NIL;
    for (size_t i = LEN(x); i > 0; i--) l = cons(VREF(x, i - 1), l);
    return pcall(P_list2vec, L1(qq(l, depth)));
  }
  if (IS(x, K_SYMBOL) || x == NIL) return L2(sym_quote, x);
  return x;
}

/* (define-record-type name (ctor field...) pred (field acc [mod])...) */
static V expand_drt(V x) {
  V name = cadr(x), ctor = CAR(cddr(x)), pred = cadr(cddr(x)), fields = cddr(cddr(x));
  if (IS(name, K_SYMBOL) == 0 && ISPAIR(name)) name = CAR(name);
  V fnames = NIL;
  for (V f = fields; f != NIL; f = CDR(f)) fnames = cons(ISPAIR(CAR(f)) ? CAR(CAR(f)) : CAR(f), fnames);
  V out = NIL;
  V rtd = name;
  out = cons(L3(S_define, rtd, pcall(P_make_rtd, L2(L2(sym_quote, name), L2(sym_quote, fnames)))), out);
  size_t nf = list_len(fields);
  if (ISPAIR(ctor)) {
    V cargs = CDR(ctor), inits = NIL;
    V fl = fields;
    V vals = NIL;
    for (size_t i = 0; i < nf; i++, fl = CDR(fl)) {
      V fname = ISPAIR(CAR(fl)) ? CAR(CAR(fl)) : CAR(fl);
      V found = FALSE_V;
      for (V c = cargs; c != NIL; c = CDR(c))
        if (CAR(c) == fname) found = fname;
      vals = cons(found, vals);
    }
    for (V v = vals; v != NIL; v = CDR(v)) inits = cons(CAR(v), inits);
    out = cons(L3(S_define, CAR(ctor), L3(S_lambda, cargs, pcall(P_record_new, cons(rtd, inits)))), out);
  } else if (IS(ctor, K_SYMBOL)) {
    V params = NIL, inits = NIL;
    for (V f = fnames; f != NIL; f = CDR(f)) params = cons(CAR(f), params);
    inits = params;
    out = cons(L3(S_define, ctor, L3(S_lambda, params, pcall(P_record_new, cons(rtd, inits)))), out);
  }
  V obj = gensym("obj"), val = gensym("val");
  out = cons(L3(S_define, pred, L3(S_lambda, L1(obj), pcall(P_record_p, L2(obj, rtd)))), out);
  V fl = fields;
  for (size_t i = 0; i < nf; i++, fl = CDR(fl)) {
    V f = CAR(fl);
    if (!ISPAIR(f)) continue;
    if (ISPAIR(CDR(f)))
      out = cons(L3(S_define, cadr(f), L3(S_lambda, L1(obj), pcall(P_record_ref, L3(obj, rtd, FIX(i))))), out);
    if (ISPAIR(CDR(f)) && ISPAIR(cddr(f)))
      out = cons(L3(S_define, CAR(cddr(f)),
                    L3(S_lambda, L2(obj, val), pcall(P_record_set, L4(obj, rtd, FIX(i), val)))),
                 out);
  }
  V r = NIL;
  for (; out != NIL; out = CDR(out)) r = cons(CAR(out), r);
  return cons(S_begin, r);
}

static Node *comp_let(V x, Scope *sc) {
  V bindings = cadr(x), body = cddr(x);
  if (IS(bindings, K_SYMBOL)) { /* named let */
    V name = bindings, vars = NIL, inits = NIL;
    bindings = CAR(body);
    body = CDR(body);
    for (V b = bindings; b != NIL; b = CDR(b)) {
      vars = cons(CAR(CAR(b)), vars);
      inits = cons(ISPAIR(CDR(CAR(b))) ? cadr(CAR(b)) : UNSPEC, inits);
    }
    V rv = NIL, ri = NIL;
    for (; vars != NIL; vars = CDR(vars), inits = CDR(inits)) {
      rv = cons(CAR(vars), rv);
      ri = cons(CAR(inits), ri);
    }
    V lam = cons(S_lambda, cons(rv, body));
    V lr = L3(S_letrec, L1(L2(name, lam)), name);
    return comp(cons(lr, ri), sc);
  }
  size_t k = list_len(bindings);
  Node *n = mknode(OP_LET);
  n->n = (int)k;
  mkkids(n, k ? k : 1);
  Scope *ns = calloc(1, sizeof *ns);
  ns->parent = sc;
  size_t i = 0;
  for (V b = bindings; b != NIL; b = CDR(b), i++) {
    V bb = CAR(b);
    V var = ISPAIR(bb) ? CAR(bb) : bb;
    KSET(n, i, ISPAIR(bb) && ISPAIR(CDR(bb)) ? comp(cadr(bb), sc) : comp_const(UNSPEC));
    ns->names = realloc(ns->names, (ns->n + 1) * sizeof(V));
    ns->names[ns->n++] = var; /* duplicates allowed in let*: later shadows */
    ns->cap = ns->n;
  }
  NSET(n, a, comp_body(body, ns));
  n->idx = ns->n; /* frame size */
  return n;
}

static Node *comp_letrec(V x, Scope *sc) {
  V bindings = cadr(x), body = cddr(x);
  Node *n = mknode(OP_LETREC);
  Scope *ns = calloc(1, sizeof *ns);
  ns->parent = sc;
  for (V b = bindings; b != NIL; b = CDR(b)) scope_add(ns, CAR(CAR(b)));
  size_t k = list_len(bindings);
  n->n = (int)k;
  mkkids(n, k ? k : 1);
  size_t i = 0;
  for (V b = bindings; b != NIL; b = CDR(b), i++) {
    V val = cadr(CAR(b));
    if (ISPAIR(val) && CAR(val) == S_lambda) {
      Node *l = mknode(OP_LAMBDA);
      NSET(l, v, comp_lambda(cadr(val), cddr(val), ns, CAR(CAR(b))));
      KSET(n, i, l);
    } else {
      KSET(n, i, comp(val, ns));
    }
  }
  NSET(n, a, comp_body(body, ns));
  n->idx = ns->n;
  return n;
}

static Node *comp_cond(V clauses, Scope *sc) {
  if (clauses == NIL) return comp_const(UNSPEC);
  V c = CAR(clauses);
  if (CAR(c) == S_else) return comp_seq(CDR(c), sc);
  if (ISPAIR(CDR(c)) && cadr(c) == S_arrow) {
    V t = gensym("t");
    V rest = CDR(clauses) == NIL ? UNSPEC : cons(S_cond, CDR(clauses));
    return comp(L3(S_let, L1(L2(t, CAR(c))), L4(S_if, t, L2(CAR(cddr(c)), t), rest)), sc);
  }
  if (CDR(c) == NIL) {
    Node *n = mknode(OP_OR);
    n->n = 2;
    mkkids(n, 2);
    KSET(n, 0, comp(CAR(c), sc));
    KSET(n, 1, comp_cond(CDR(clauses), sc));
    return n;
  }
  Node *n = mknode(OP_IF);
  NSET(n, a, comp(CAR(c), sc));
  NSET(n, b, comp_seq(CDR(c), sc));
  NSET(n, c, comp_cond(CDR(clauses), sc));
  return n;
}

static Node *comp_andor(int op, V args, Scope *sc) {
  size_t k = list_len(args);
  if (k == 0) return comp_const(op == OP_AND ? TRUE_V : FALSE_V);
  if (k == 1) return comp(CAR(args), sc);
  Node *n = mknode(op);
  n->n = (int)k;
  mkkids(n, k);
  for (size_t i = 0; i < k; i++, args = CDR(args)) KSET(n, i, comp(CAR(args), sc));
  return n;
}

static Node *comp_call(V x, Scope *sc) {
  V f = CAR(x);
  size_t k = list_len(CDR(x));
  Node *n = mknode(OP_CALL);
  Prim *pr = NULL;
  int d, i;
  if (IS(f, K_SYMBOL) && !(sc && lookup(sc, f, &d, &i)) && IS(SYMVAL(f), K_PRIM)) {
    pr = (Prim *)SYMVAL(f);
    if (pinfo(pr)->inl) {
      n->inl = (uint8_t)pinfo(pr)->inl;
      n->op = OP_PCALL;
      NSET(n, prim, pr);
      NSET(n, v, f);
    }
  } else if (IS(f, K_PRIM) && pinfo((Prim *)f)->inl) {
    n->inl = (uint8_t)pinfo((Prim *)f)->inl;
    n->op = OP_PCALL;
    NSET(n, prim, (Prim *)f);
    NSET(n, v, 0);
  }
  NSET(n, a, comp(f, sc));
  n->n = (int)k;
  mkkids(n, k ? k : 1);
  V a = CDR(x);
  for (size_t j = 0; j < k; j++, a = CDR(a)) KSET(n, j, comp(CAR(a), sc));
  return n;
}

static Node *comp(V x, Scope *sc) {
  if (IS(x, K_SYMBOL)) {
    int d, i;
    if (sc && lookup(sc, x, &d, &i)) {
      Node *n = mknode(d == 0 ? OP_LREF0 : d == 1 ? OP_LREF1 : OP_LREF);
      n->depth = d;
      n->idx = i;
      return n;
    }
    Node *n = mknode(OP_GREF);
    NSET(n, v, x);
    keep(x);
    return n;
  }
  if (!ISPAIR(x)) return comp_const(x);
  V h = CAR(x);
  int d, i;
  if (IS(h, K_SYMBOL) && !(sc && lookup(sc, h, &d, &i))) {
    if (h == sym_quote) return comp_const(cadr(x));
    if (h == sym_quasiquote) return comp(qq(cadr(x), 1), sc);
    if (h == S_if) {
      Node *n = mknode(OP_IF);
      NSET(n, a, comp(cadr(x), sc));
      NSET(n, b, comp(CAR(cddr(x)), sc));
      NSET(n, c, CDR(cddr(x)) != NIL ? comp(cadr(cddr(x)), sc) : comp_const(UNSPEC));
      return n;
    }
    if (h == S_define) {
      V t = cadr(x);
      if (ISPAIR(t)) { /* (define (f . args) body...), curried too */
        V body = cddr(x);
        while (ISPAIR(CAR(t))) {
          body = L1(cons(S_lambda, cons(CDR(t), body)));
          t = CAR(t);
        }
        Node *l = mknode(OP_LAMBDA);
        NSET(l, v, comp_lambda(CDR(t), body, sc, CAR(t)));
        return comp_set(CAR(t), l, sc, 1);
      }
      Node *v = CDR(cddr(x)) == NIL && cddr(x) == NIL ? comp_const(UNSPEC) : comp(CAR(cddr(x)), sc);
      if (v->op == OP_LAMBDA) NSET(NLAM(v), name, t);
      return comp_set(t, v, sc, 1);
    }
    if (h == S_set) return comp_set(cadr(x), comp(CAR(cddr(x)), sc), sc, 0);
    if (h == S_lambda) {
      Node *n = mknode(OP_LAMBDA);
      NSET(n, v, comp_lambda(cadr(x), cddr(x), sc, FALSE_V));
      return n;
    }
    if (h == S_named_lambda) {
      Node *n = mknode(OP_LAMBDA);
      NSET(n, v, comp_lambda(CDR(cadr(x)), cddr(x), sc, CAR(cadr(x))));
      return n;
    }
    if (h == S_begin) {
      if (!sc) { /* toplevel begin: definitions stay global */
        return comp_seq(CDR(x), sc);
      }
      return comp_seq(CDR(x), sc);
    }
    if (h == S_let) return comp_let(x, sc);
    if (h == S_letstar) {
      V b = cadr(x);
      if (b == NIL || CDR(b) == NIL) return comp_let(cons(S_let, CDR(x)), sc);
      return comp(L3(S_let, L1(CAR(b)), cons(S_letstar, cons(CDR(b), cddr(x)))), sc);
    }
    if (h == S_letrec || h == S_letrecstar) return comp_letrec(x, sc);
    if (h == S_cond) return comp_cond(CDR(x), sc);
    if (h == S_and) return comp_andor(OP_AND, CDR(x), sc);
    if (h == S_or) return comp_andor(OP_OR, CDR(x), sc);
    if (h == S_when || h == S_unless) {
      Node *n = mknode(OP_IF);
      NSET(n, a, comp(cadr(x), sc));
      Node *body = comp_seq(cddr(x), sc);
      NSET(n, b, h == S_when ? body : comp_const(UNSPEC));
      NSET(n, c, h == S_when ? comp_const(UNSPEC) : body);
      return n;
    }
    if (h == S_case) {
      V t = gensym("key"), cl = NIL;
      for (V c = cddr(x); c != NIL; c = CDR(c)) {
        V cc = CAR(c), test;
        if (CAR(cc) == S_else) test = S_else;
        else test = pcall(P_memv, L2(t, L2(sym_quote, CAR(cc))));
        V body = CDR(cc);
        if (ISPAIR(body) && CAR(body) == S_arrow) body = L1(L2(cadr(body), t));
        cl = cons(cons(test, body), cl);
      }
      V r = NIL;
      for (; cl != NIL; cl = CDR(cl)) r = cons(CAR(cl), r);
      return comp(L3(S_let, L1(L2(t, cadr(x))), cons(S_cond, r)), sc);
    }
    if (h == S_do) {
      V loop = gensym("do"), specs = cadr(x), test = CAR(cddr(x)), body = CDR(cddr(x));
      V binds = NIL, steps = NIL;
      for (V s = specs; s != NIL; s = CDR(s)) {
        V sp = CAR(s);
        binds = cons(L2(CAR(sp), cadr(sp)), binds);
        steps = cons(cddr(sp) != NIL ? CAR(cddr(sp)) : CAR(sp), steps);
      }
      V rb = NIL, rs = NIL;
      for (; binds != NIL; binds = CDR(binds), steps = CDR(steps)) {
        rb = cons(CAR(binds), rb);
        rs = cons(CAR(steps), rs);
      }
      V again = cons(loop, rs);
      V bodyl = NIL;
      for (V b = body; b != NIL; b = CDR(b)) bodyl = cons(CAR(b), bodyl);
      bodyl = cons(again, bodyl);
      V rbody = NIL;
      for (; bodyl != NIL; bodyl = CDR(bodyl)) rbody = cons(CAR(bodyl), rbody);
      V res = CDR(test) == NIL ? L1(UNSPEC) : CDR(test);
      V form = L4(S_let, loop, rb, L4(S_if, CAR(test), cons(S_begin, res), cons(S_begin, rbody)));
      return comp(form, sc);
    }
    if (h == S_drt) return comp(expand_drt(x), sc);
    if (h == S_import || h == S_define_syntax) return comp_const(UNSPEC);
    if (h == S_delay || h == S_delay_force || h == S_make_promise) {
      if (h == S_make_promise) return comp_call(x, sc);
      V thunk = L3(S_lambda, NIL, cadr(x));
      return comp(pcall(P_make_promise, L2(FALSE_V, thunk)), sc);
    }
    if (h == S_assert) {
      return comp(L4(S_if, cadr(x), UNSPEC,
                     pcall(P_error, L2(mkstr("assertion failed", 16), L2(sym_quote, cadr(x))))),
                  sc);
    }
    if (h == S_let_values || h == S_letstar_values) {
      /* (let-values (((a b . c) expr) ...) body): nested call-with-values */
      V b = cadr(x);
      if (b == NIL) return comp(cons(S_let, cons(NIL, cddr(x))), sc);
      V inner = CDR(b) == NIL ? cons(S_let, cons(NIL, cddr(x))) : cons(h, cons(CDR(b), cddr(x)));
      return comp(pcall(P_cwv, L2(L3(S_lambda, NIL, cadr(CAR(b))), L3(S_lambda, CAR(CAR(b)), inner))), sc);
    }
    if (h == S_define_values) {
      /* (define-values (a b) expr): each name defined from a temporary list */
      V formals = cadr(x), t = gensym("vals"), out = NIL;
      V lst = pcall(P_cwv, L2(L3(S_lambda, NIL, CAR(cddr(x))), (V)P_list));
      out = cons(L3(S_define, t, lst), out);
      for (V f = formals; ISPAIR(f); f = CDR(f)) {
        out = cons(L3(S_define, CAR(f), pcall(P_cons, L2(t, NIL))), out); /* placeholder */
        V acc = L2(intern("car"), t);
        out = cons(L3(S_set, CAR(f), acc), out);
        out = cons(L3(S_set, t, L2(intern("cdr"), t)), out);
      }
      V r = NIL;
      for (; out != NIL; out = CDR(out)) r = cons(CAR(out), r);
      return comp(cons(S_begin, r), sc);
    }
    if (h == S_guard) {
      /* (guard (var clause...) body...) */
      V spec = cadr(x), var = CAR(spec), clauses = CDR(spec);
      int has_else = 0;
      for (V c = clauses; c != NIL; c = CDR(c))
        if (CAR(CAR(c)) == S_else) has_else = 1;
      if (!has_else) {
        V r = NIL, l = NIL;
        for (V c = clauses; c != NIL; c = CDR(c)) l = cons(CAR(c), l);
        l = cons(L2(S_else, pcall(P_raise_cont, L1(var))), l);
        for (; l != NIL; l = CDR(l)) r = cons(CAR(l), r);
        clauses = r;
      }
      Node *n = mknode(OP_GUARD);
      NSET(n, a, comp(cons(S_let, cons(NIL, cddr(x))), sc));
      Scope *ns = calloc(1, sizeof *ns);
      ns->parent = sc;
      scope_add(ns, var);
      NSET(n, b, comp_cond(clauses, ns));
      return n;
    }
  }
  return comp_call(x, sc);
}
