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
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Objects */

typedef struct Node Node;
typedef struct Lambda {
  int nreq, rest, fsize;
  int noescape; /* the body creates no closure: its frame may live on the C stack */
  Node *body;
  V name;
} Lambda;

typedef V (*PrimFn)(int argc, V *argv);
typedef struct Prim {
  V hdr;
  PrimFn fn;
  const char *name;
  int min, max; /* max < 0: variadic */
  int inl;      /* inline opcode for the evaluator, 0 if none */
} Prim;

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

static V intern_n(const char *s, size_t n) {
  V sym = sym_lookup(s, n);
  if (sym) return sym;
  V str = mkstr(s, n);
  V *p = alloc_nonmoving(NM_REFS, 3);
  p[0] = MKHDR(K_SYMBOL, 2);
  WB(p, &p[1], str);
  sym = (V)p;
  sym_insert(sym);
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

static V cur_in, cur_out, cur_err;

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

static V winders = NIL;   /* list of (before . after) */
static V handlers = NIL;  /* list of handler procedures or guard markers */
static V throw_val;       /* value being passed by a longjmp */
static Catch *toplevel_catch;

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

/* ------------------------------------------------------------------ */
/* Reader */

static V sym_quote, sym_quasiquote, sym_unquote, sym_unquote_splicing, sym_dot;

static int skip_ws(Port *p) {
  for (;;) {
    int c = port_getc(p);
    if (c == ';') {
      while ((c = port_getc(p)) != EOF && c != '\n') {}
      continue;
    }
    if (c == '#') {
      int d = port_peekc(p);
      if (d == '|') {
        port_getc(p);
        int depth = 1, prev = 0;
        while (depth > 0 && (c = port_getc(p)) != EOF) {
          if (prev == '|' && c == '#') { depth--; c = 0; }
          else if (prev == '#' && c == '|') { depth++; c = 0; }
          prev = c;
        }
        continue;
      }
      return c;
    }
    if (c == EOF || !isspace(c)) return c;
  }
}

static V read_datum(Port *p);
static int is_delim(int c) {
  return c == EOF || isspace(c) || c == '(' || c == ')' || c == '[' || c == ']' ||
         c == '"' || c == ';';
}

static V parse_number(const char *s, int radix) {
  if (!*s) return FALSE_V;
  char *end;
  errno = 0;
  long long n = strtoll(s, &end, radix);
  if (*end == 0 && errno == 0 && (s[0] != '+' && s[0] != '-' ? 1 : s[1] != 0)) {
    if (n >= FIX_MIN && n <= FIX_MAX) return FIX(n);
    return mkflo((double)n);
  }
  if (radix != 10) return FALSE_V;
  const char *slash = strchr(s, '/');
  if (slash) {
    V a = parse_number(strndup(s, (size_t)(slash - s)), 10), b = parse_number(slash + 1, 10);
    if (!ISFIX(a) || !ISFIX(b) || FIXV(b) == 0) return FALSE_V;
    if (FIXV(a) % FIXV(b) == 0) return FIX(FIXV(a) / FIXV(b));
    return mkflo((double)FIXV(a) / (double)FIXV(b));
  }
  if (!strcmp(s, "+inf.0")) return mkflo(INFINITY);
  if (!strcmp(s, "-inf.0")) return mkflo(-INFINITY);
  if (!strcmp(s, "+nan.0") || !strcmp(s, "-nan.0")) return mkflo(NAN);
  int ok = 0;
  for (const char *q = s; *q; q++) if (isdigit((unsigned char)*q)) ok = 1;
  if (!ok) return FALSE_V;
  for (const char *q = s; *q; q++)
    if (!isdigit((unsigned char)*q) && !strchr("+-.eE", *q)) return FALSE_V;
  double d = strtod(s, &end);
  if (*end) return FALSE_V;
  return mkflo(d);
}

static const struct { const char *name; int c; } char_names[] = {
  {"space", ' '}, {"newline", '\n'}, {"tab", '\t'}, {"nul", 0}, {"null", 0},
  {"return", '\r'}, {"linefeed", '\n'}, {"alarm", 7}, {"backspace", 8},
  {"delete", 127}, {"escape", 27}, {"altmode", 27}, {NULL, 0}};

static char *read_token(Port *p, int first, size_t *len) {
  static char *buf;
  static size_t cap;
  size_t n = 0;
  int c = first;
  for (;;) {
    if (n + 2 > cap) {
      cap = cap ? cap * 2 : 128;
      buf = realloc(buf, cap);
      if (!buf) oom();
    }
    buf[n++] = (char)c;
    c = port_peekc(p);
    if (is_delim(c)) break;
    port_getc(p);
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

static V read_list(Port *p, int close) {
  V head = NIL, tail = 0;
  for (;;) {
    int c = skip_ws(p);
    if (c == EOF) err("read: unexpected end of file in list", FALSE_V);
    if (c == ')' || c == ']') return head;
    if (c == '.' && is_delim(port_peekc(p))) {
      V x = read_datum(p);
      c = skip_ws(p);
      if (c != ')' && c != ']') err("read: bad dotted list", FALSE_V);
      if (!tail) return x;
      SETCDR(tail, x);
      return head;
    }
    port_unget(p, c);
    V x = read_datum(p);
    V cell = cons(x, NIL);
    if (tail) SETCDR(tail, cell);
    else head = cell;
    tail = cell;
  }
  (void)close;
}

static V read_datum(Port *p) {
  int c = skip_ws(p);
  switch (c) {
  case EOF: return EOF_V;
  case '(': case '[': return read_list(p, c == '(' ? ')' : ']');
  case ')': case ']': return read_datum(p); /* stray close: skip */
  case '\'': return cons(sym_quote, cons(read_datum(p), NIL));
  case '`': return cons(sym_quasiquote, cons(read_datum(p), NIL));
  case ',':
    if (port_peekc(p) == '@') {
      port_getc(p);
      return cons(sym_unquote_splicing, cons(read_datum(p), NIL));
    }
    return cons(sym_unquote, cons(read_datum(p), NIL));
  case '"': {
    size_t n = 0, cap = 64;
    char *b = malloc(cap);
    if (!b) oom();
    while ((c = port_getc(p)) != '"') {
      if (c == EOF) err("read: unexpected end of file in string", FALSE_V);
      if (c == '\\') {
        c = port_getc(p);
        switch (c) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case 'a': c = 7; break;
        case '0': c = 0; break;
        case 'x': {
          int v = 0;
          while ((c = port_getc(p)) != ';' && c != EOF) v = v * 16 + (isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
          c = v;
          break;
        }
        case '\n': /* line continuation */
          while ((c = port_peekc(p)) == ' ' || c == '\t') port_getc(p);
          continue;
        default: break;
        }
      }
      if (n + 1 >= cap) {
        cap *= 2;
        b = realloc(b, cap);
        if (!b) oom();
      }
      b[n++] = (char)c;
    }
    V s = mkstr(b, n);
    free(b);
    return s;
  }
  case '#': {
    int d = port_getc(p);
    if (d == '(') {
      V l = read_list(p, ')');
      size_t n = 0;
      for (V x = l; x != NIL; x = CDR(x)) n++;
      V v = mkvec(n, NIL);
      size_t i = 0;
      for (V x = l; x != NIL; x = CDR(x)) VSET(v, i++, CAR(x));
      return v;
    }
    if (d == ';') {
      read_datum(p);
      return read_datum(p);
    }
    if (d == '\\') {
      c = port_getc(p);
      if (is_delim(port_peekc(p))) return CHR(c);
      size_t n;
      char *t = read_token(p, c, &n);
      for (int i = 0; char_names[i].name; i++)
        if (!strcmp(t, char_names[i].name)) return CHR(char_names[i].c);
      if (t[0] == 'x' && n > 1) return CHR(strtol(t + 1, NULL, 16));
      return CHR((unsigned char)t[0]);
    }
    if (d == '!') { /* #!eof, #!default, #!fold-case...: skip as a token */
      size_t n;
      char *t = read_token(p, d, &n);
      if (!strcmp(t, "!eof")) return EOF_V;
      return read_datum(p);
    }
    size_t n;
    char *t = read_token(p, d, &n);
    if (!strcmp(t, "t") || !strcmp(t, "true")) return TRUE_V;
    if (!strcmp(t, "f") || !strcmp(t, "false")) return FALSE_V;
    if (!strcmp(t, "u8")) {
      if (port_getc(p) != '(') err("read: bad bytevector", FALSE_V);
      V l = read_list(p, ')');
      size_t k = 0;
      for (V x = l; x != NIL; x = CDR(x)) k++;
      V bv = mkbv(k);
      k = 0;
      for (V x = l; x != NIL; x = CDR(x)) ((unsigned char *)STR(bv))[k++] = (unsigned char)FIXV(CAR(x));
      return bv;
    }
    if (t[0] == 'x' || t[0] == 'X') return parse_number(t + 1, 16);
    if (t[0] == 'b' || t[0] == 'B') return parse_number(t + 1, 2);
    if (t[0] == 'o' || t[0] == 'O') return parse_number(t + 1, 8);
    if (t[0] == 'd' || t[0] == 'D') return parse_number(t + 1, 10);
    if (t[0] == 'e' || t[0] == 'E') {
      V x = parse_number(t + 1, 10);
      return ISFLO(x) ? FIX((intptr_t)FLO(x)) : x;
    }
    if (t[0] == 'i' || t[0] == 'I') {
      V x = parse_number(t + 1, 10);
      return ISFIX(x) ? mkflo((double)FIXV(x)) : x;
    }
    err("read: unknown # syntax", mkstr(t, n));
  }
  case '|': {
    size_t n = 0;
    char b[1024];
    while ((c = port_getc(p)) != '|' && c != EOF && n < sizeof b) b[n++] = (char)c;
    return intern_n(b, n);
  }
  default: {
    size_t n;
    char *t = read_token(p, c, &n);
    if (isdigit((unsigned char)t[0]) || ((t[0] == '-' || t[0] == '+' || t[0] == '.') && n > 1)) {
      V x = parse_number(t, 10);
      if (x != FALSE_V) return x;
    }
    return intern_n(t, n);
  }
  }
}

/* ------------------------------------------------------------------ */
/* Printer */

static void print_flo(double d, char *b) {
  if (isnan(d)) { strcpy(b, "+nan.0"); return; }
  if (isinf(d)) { strcpy(b, d > 0 ? "+inf.0" : "-inf.0"); return; }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(b, 40, "%.*g", prec, d);
    if (strtod(b, NULL) == d) break;
  }
  if (!strpbrk(b, ".en")) strcat(b, ".0");
}

static void print(V v, Port *p, int write) {
  char b[64];
  if (ISFIX(v)) {
    snprintf(b, sizeof b, "%ld", (long)FIXV(v));
    port_puts(p, b);
  } else if (ISCHR(v)) {
    int c = CHRV(v);
    if (!write) {
      char ch = (char)c;
      port_write(p, &ch, 1);
      return;
    }
    port_puts(p, "#\\");
    for (int i = 0; char_names[i].name; i++)
      if (char_names[i].c == c) {
        port_puts(p, char_names[i].name);
        return;
      }
    if (c < 32) {
      snprintf(b, sizeof b, "x%x", c);
      port_puts(p, b);
    } else {
      char ch = (char)c;
      port_write(p, &ch, 1);
    }
  } else if (v == FALSE_V) port_puts(p, "#f");
  else if (v == TRUE_V) port_puts(p, "#t");
  else if (v == NIL) port_puts(p, "()");
  else if (v == UNSPEC) { }
  else if (v == EOF_V) port_puts(p, "#<eof>");
  else if (v == UNBOUND) port_puts(p, "#<unbound>");
  else if (v == DEFAULT_V) port_puts(p, "#<default>");
  else if (ISFLO(v)) {
    print_flo(FLO(v), b);
    port_puts(p, b);
  } else if (ISPAIR(v)) {
    if (CAR(v) == sym_quote && ISPAIR(CDR(v)) && CDR(CDR(v)) == NIL) {
      port_puts(p, "'");
      print(CAR(CDR(v)), p, write);
      return;
    }
    port_puts(p, "(");
    for (;;) {
      print(CAR(v), p, write);
      v = CDR(v);
      if (ISPAIR(v)) port_puts(p, " ");
      else break;
    }
    if (v != NIL) {
      port_puts(p, " . ");
      print(v, p, write);
    }
    port_puts(p, ")");
  } else {
    switch (KIND(v)) {
    case K_STRING:
      if (!write) port_write(p, STR(v), LEN(v));
      else {
        port_puts(p, "\"");
        for (size_t i = 0; i < LEN(v); i++) {
          char c = STR(v)[i];
          if (c == '"' || c == '\\') port_puts(p, "\\");
          if (c == '\n') port_puts(p, "\\n");
          else port_write(p, &c, 1);
        }
        port_puts(p, "\"");
      }
      break;
    case K_SYMBOL: port_write(p, STR(SYMNAME(v)), LEN(SYMNAME(v))); break;
    case K_VECTOR:
      port_puts(p, "#(");
      for (size_t i = 0; i < LEN(v); i++) {
        if (i) port_puts(p, " ");
        print(VREF(v, i), p, write);
      }
      port_puts(p, ")");
      break;
    case K_BYTEVECTOR:
      port_puts(p, "#u8(");
      for (size_t i = 0; i < LEN(v); i++) {
        snprintf(b, sizeof b, i ? " %d" : "%d", ((unsigned char *)STR(v))[i]);
        port_puts(p, b);
      }
      port_puts(p, ")");
      break;
    case K_CLOSURE: case K_PRIM: case K_CONT: case K_PARAM: port_puts(p, "#<procedure>"); break;
    case K_RECORD:
      port_puts(p, "#<");
      print(VREF(VREF(v, 0), 0), p, 0);
      port_puts(p, ">");
      break;
    case K_ERROR:
      port_puts(p, "#<error ");
      print(VREF(v, 0), p, 1);
      port_puts(p, ">");
      break;
    case K_PORT: port_puts(p, "#<port>"); break;
    case K_TABLE: port_puts(p, "#<hashtable>"); break;
    case K_VALUES:
      for (size_t i = 0; i < LEN(v); i++) {
        if (i) port_puts(p, " ");
        print(VREF(v, i), p, write);
      }
      break;
    default: port_puts(p, "#<object>"); break;
    }
  }
}

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

struct Node {
  int op, n, depth, idx;
  V v;
  Node *a, *b, *c;
  Node **kids;
  Lambda *lam;
  Prim *prim;
};

typedef struct Scope {
  V *names;
  int n, cap;
  struct Scope *parent;
} Scope;

static Node *mknode(int op) {
  Node *n = calloc(1, sizeof *n);
  if (!n) oom();
  n->op = op;
  return n;
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
  n->v = v;
  keep(v);
  return n;
}

static Node *comp_seq(V forms, Scope *sc) {
  size_t k = list_len(forms);
  if (k == 0) return comp_const(UNSPEC);
  if (k == 1) return comp(CAR(forms), sc);
  Node *n = mknode(OP_SEQ);
  n->n = (int)k;
  n->kids = calloc(k, sizeof(Node *));
  for (size_t i = 0; i < k; i++, forms = CDR(forms)) n->kids[i] = comp(CAR(forms), sc);
  return n;
}

static Lambda *comp_lambda(V params, V body, Scope *parent, V name) {
  Scope *sc = calloc(1, sizeof *sc);
  sc->parent = parent;
  Lambda *L = calloc(1, sizeof *L);
  for (; ISPAIR(params); params = CDR(params)) {
    scope_add(sc, CAR(params));
    L->nreq++;
  }
  if (params != NIL) {
    scope_add(sc, params);
    L->rest = 1;
  }
  L->name = name;
  keep(name);
  L->body = comp_body(body, sc);
  L->fsize = sc->n;
  L->noescape = !makes_closure(L->body);
  return L;
}

static V expand_drt(V x);

static int makes_closure(Node *n) {
  if (!n) return 0;
  if (n->op == OP_LAMBDA) return 1;
  if (makes_closure(n->a) || makes_closure(n->b) || makes_closure(n->c)) return 1;
  if (n->kids)
    for (int i = 0; i < n->n; i++)
      if (makes_closure(n->kids[i])) return 1;
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
    n->v = name;
    keep(name);
  }
  n->a = val;
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
  n->kids = calloc(k ? k : 1, sizeof(Node *));
  Scope *ns = calloc(1, sizeof *ns);
  ns->parent = sc;
  size_t i = 0;
  for (V b = bindings; b != NIL; b = CDR(b), i++) {
    V bb = CAR(b);
    V var = ISPAIR(bb) ? CAR(bb) : bb;
    n->kids[i] = ISPAIR(bb) && ISPAIR(CDR(bb)) ? comp(cadr(bb), sc) : comp_const(UNSPEC);
    ns->names = realloc(ns->names, (ns->n + 1) * sizeof(V));
    ns->names[ns->n++] = var; /* duplicates allowed in let*: later shadows */
    ns->cap = ns->n;
  }
  n->a = comp_body(body, ns);
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
  n->kids = calloc(k ? k : 1, sizeof(Node *));
  size_t i = 0;
  for (V b = bindings; b != NIL; b = CDR(b), i++) {
    V val = cadr(CAR(b));
    if (ISPAIR(val) && CAR(val) == S_lambda) {
      Node *l = mknode(OP_LAMBDA);
      l->lam = comp_lambda(cadr(val), cddr(val), ns, CAR(CAR(b)));
      n->kids[i] = l;
    } else {
      n->kids[i] = comp(val, ns);
    }
  }
  n->a = comp_body(body, ns);
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
    n->kids = calloc(2, sizeof(Node *));
    n->kids[0] = comp(CAR(c), sc);
    n->kids[1] = comp_cond(CDR(clauses), sc);
    return n;
  }
  Node *n = mknode(OP_IF);
  n->a = comp(CAR(c), sc);
  n->b = comp_seq(CDR(c), sc);
  n->c = comp_cond(CDR(clauses), sc);
  return n;
}

static Node *comp_andor(int op, V args, Scope *sc) {
  size_t k = list_len(args);
  if (k == 0) return comp_const(op == OP_AND ? TRUE_V : FALSE_V);
  if (k == 1) return comp(CAR(args), sc);
  Node *n = mknode(op);
  n->n = (int)k;
  n->kids = calloc(k, sizeof(Node *));
  for (size_t i = 0; i < k; i++, args = CDR(args)) n->kids[i] = comp(CAR(args), sc);
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
    if (pr->inl) {
      n->op = OP_PCALL;
      n->prim = pr;
      n->v = f;
    }
  } else if (IS(f, K_PRIM) && ((Prim *)f)->inl) {
    n->op = OP_PCALL;
    n->prim = (Prim *)f;
    n->v = 0;
  }
  n->a = comp(f, sc);
  n->n = (int)k;
  n->kids = calloc(k ? k : 1, sizeof(Node *));
  V a = CDR(x);
  for (size_t j = 0; j < k; j++, a = CDR(a)) n->kids[j] = comp(CAR(a), sc);
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
    n->v = x;
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
      n->a = comp(cadr(x), sc);
      n->b = comp(CAR(cddr(x)), sc);
      n->c = CDR(cddr(x)) != NIL ? comp(cadr(cddr(x)), sc) : comp_const(UNSPEC);
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
        l->lam = comp_lambda(CDR(t), body, sc, CAR(t));
        return comp_set(CAR(t), l, sc, 1);
      }
      Node *v = CDR(cddr(x)) == NIL && cddr(x) == NIL ? comp_const(UNSPEC) : comp(CAR(cddr(x)), sc);
      if (v->op == OP_LAMBDA) v->lam->name = t;
      return comp_set(t, v, sc, 1);
    }
    if (h == S_set) return comp_set(cadr(x), comp(CAR(cddr(x)), sc), sc, 0);
    if (h == S_lambda) {
      Node *n = mknode(OP_LAMBDA);
      n->lam = comp_lambda(cadr(x), cddr(x), sc, FALSE_V);
      return n;
    }
    if (h == S_named_lambda) {
      Node *n = mknode(OP_LAMBDA);
      n->lam = comp_lambda(CDR(cadr(x)), cddr(x), sc, CAR(cadr(x)));
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
      n->a = comp(cadr(x), sc);
      Node *body = comp_seq(cddr(x), sc);
      n->b = h == S_when ? body : comp_const(UNSPEC);
      n->c = h == S_when ? comp_const(UNSPEC) : body;
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
      n->a = comp(cons(S_let, cons(NIL, cddr(x))), sc);
      Scope *ns = calloc(1, sizeof *ns);
      ns->parent = sc;
      scope_add(ns, var);
      n->b = comp_cond(clauses, ns);
      return n;
    }
  }
  return comp_call(x, sc);
}

/* ------------------------------------------------------------------ */
/* Evaluator */

#define CLO_LAM(c) ((Lambda *)(OBJ(c)[1] & ~(V)1))
#define CLO_ENV(c) (OBJ(c)[2])

static V mkclosure(Lambda *L, V env) {
  V *p = alloc_refs(3);
  p[0] = MKHDR(K_CLOSURE, 2);
  p[1] = (V)L | 1; /* a C pointer, odd so the trace skips it */
  WB(p, &p[2], env);
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
  WB(fr, &fr[1], CLO_ENV(f));
  for (int i = 0; i < L->nreq; i++) WB(fr, &fr[2 + i], argv[i]);
  if (L->rest) {
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
  if (argc < p->min || (p->max >= 0 && argc > p->max)) arity_error((V)p, argc);
  return p->fn(argc, argv);
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
    for (int i = 0; i < n->n - 1; i++) eval(n->kids[i], env);
    n = n->kids[n->n - 1];
    goto top;
  case OP_AND:
    for (int i = 0; i < n->n - 1; i++)
      if (eval(n->kids[i], env) == FALSE_V) return FALSE_V;
    n = n->kids[n->n - 1];
    goto top;
  case OP_OR:
    for (int i = 0; i < n->n - 1; i++) {
      V v = eval(n->kids[i], env);
      if (v != FALSE_V) return v;
    }
    n = n->kids[n->n - 1];
    goto top;
  case OP_LAMBDA: return mkclosure(n->lam, env);
  case OP_LET: {
    int k = n->n;
    V *fr;
    if (k == 0) {
      fr = alloc_refs(2 + (size_t)n->idx);
    } else {
      V argv[k];
      for (int i = 0; i < k; i++) argv[i] = eval(n->kids[i], env);
      fr = alloc_refs(2 + (size_t)n->idx);
      for (int i = 0; i < k; i++) WB(fr, &fr[2 + i], argv[i]);
    }
    fr[0] = MKHDR(K_FRAME, 1 + n->idx);
    WB(fr, &fr[1], env);
    env = (V)fr;
    n = n->a;
    goto top;
  }
  case OP_LETREC: {
    V *fr = alloc_refs(2 + (size_t)n->idx);
    fr[0] = MKHDR(K_FRAME, 1 + n->idx);
    WB(fr, &fr[1], env);
    env = (V)fr;
    for (int i = 0; i < n->n; i++) {
      V v = eval(n->kids[i], env);
      WB(fr, &fr[2 + i], v);
    }
    n = n->a;
    goto top;
  }
  case OP_GUARD: return guard_run(n, env);
  case OP_PCALL: {
    int k = n->n;
    if (k == 1) {
      V a = eval(n->kids[0], env);
      if (n->v && SYMVAL(n->v) != (V)n->prim) goto general1;
      switch (n->prim->inl) {
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
      V a = eval(n->kids[0], env);
      V b = eval(n->kids[1], env);
      if (n->v && SYMVAL(n->v) != (V)n->prim) goto general2;
      switch (n->prim->inl) {
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
    if (k == 3 && n->prim->inl == I_VSET) {
      V a = eval(n->kids[0], env);
      V b = eval(n->kids[1], env);
      V c = eval(n->kids[2], env);
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
    for (int i = 0; i < k; i++) argv[i] = eval(n->kids[i], env);
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
  WB(fr, &fr[1], env);
  WB(fr, &fr[2], throw_val);
  throw_val = UNSPEC;
  return eval(n->b, (V)fr);
}

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
PRIM(p_hashtable_ref) {
  V c = ht_cell(argv[0], argv[1]);
  return c ? CDR(c) : argc > 2 ? argv[2] : FALSE_V;
}
PRIM(p_hashtable_containsp) { UNUSED; return BOOL(ht_cell(argv[0], argv[1]) != 0); }
PRIM(p_hashtable_set) {
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
PRIM(p_hashtable_delete) {
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
PRIM(p_hashtable_keys) {
  UNUSED;
  V b = VREF(argv[0], 1), r = NIL;
  for (size_t i = 0; i < LEN(b); i++) for (V l = VREF(b, i); l != NIL; l = CDR(l)) r = cons(CAR(CAR(l)), r);
  return p_list_to_vector(1, &r);
}

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

static void run_finalizers(void) {
  V obj;
  intptr_t data;
  while (pop_finalized(&obj, &data)) {
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
}
PRIM(p_collect) { UNUSED; collect_now(); run_finalizers(); return UNSPEC; }
PRIM(p_make_guardian) {
  UNUSED;
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

/* ------------------------------------------------------------------ */
/* The primitive table */

#define P(name, fn, mn, mx) {name, fn, mn, mx, 0, NULL}
#define PI(name, fn, mn, mx, inl) {name, fn, mn, mx, inl, NULL}
static struct pdef {
  const char *name;
  PrimFn fn;
  int min, max, inl;
  Prim **save;
} pdefs[] = {
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
  {NULL, NULL, 0, 0, 0, NULL}};

static Prim *find_prim(const char *name) {
  V s = intern(name);
  return (Prim *)SYMVAL(s);
}

static void init_prims(void) {
  size_t n = 0;
  while (pdefs[n].name) n++;
  Prim *ps = calloc(n, sizeof(Prim)); /* outside the heap; 8-aligned */
  for (size_t i = 0; i < n; i++) {
    ps[i].hdr = MKHDR(K_PRIM, 0);
    ps[i].fn = pdefs[i].fn;
    ps[i].name = pdefs[i].name;
    ps[i].min = pdefs[i].min;
    ps[i].max = pdefs[i].max;
    ps[i].inl = pdefs[i].inl;
    V s = intern(pdefs[i].name);
    keep(s);
    WB(OBJ(s), &SYMVAL(s), (V)&ps[i]);
  }
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

static V ksym(const char *s) {
  V v = intern(s);
  keep(v);
  return v;
}

static void init_syms(void) {
  sym_quote = ksym("quote");
  sym_quasiquote = ksym("quasiquote");
  sym_unquote = ksym("unquote");
  sym_unquote_splicing = ksym("unquote-splicing");
  sym_dot = ksym(".");
  S_define = ksym("define"); S_lambda = ksym("lambda"); S_if = ksym("if"); S_set = ksym("set!");
  S_begin = ksym("begin"); S_let = ksym("let"); S_letstar = ksym("let*"); S_letrec = ksym("letrec");
  S_letrecstar = ksym("letrec*"); S_cond = ksym("cond"); S_case = ksym("case"); S_and = ksym("and");
  S_or = ksym("or"); S_when = ksym("when"); S_unless = ksym("unless"); S_do = ksym("do");
  S_else = ksym("else"); S_arrow = ksym("=>"); S_drt = ksym("define-record-type");
  S_import = ksym("import"); S_delay = ksym("delay"); S_delay_force = ksym("delay-force");
  S_make_promise = ksym("make-promise-syntax"); S_guard = ksym("guard");
  S_let_values = ksym("let-values"); S_letstar_values = ksym("let*-values");
  S_define_values = ksym("define-values"); S_case_lambda = ksym("case-lambda");
  S_parameterize = ksym("parameterize"); S_assert = ksym("assert");
  S_define_syntax = ksym("define-syntax"); S_named_lambda = ksym("named-lambda");
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

static void *interp_main(void *arg) {
  (void)arg;
  heap_attach_thread();
  add_root(&cpool);
  add_root(&winders);
  add_root(&handlers);
  add_root(&throw_val);
  add_root(&cur_in);
  add_root(&cur_out);
  add_root(&cur_err);
  add_root(&guardians);
  throw_val = UNSPEC;
  cpool = mkvec(1024, NIL);
  guardians = mkvec(16, FALSE_V);
  init_syms();
  init_prims();
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
  int i = 1;
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
    FILE *f = fopen(g_argv[i], "r");
    if (!f) {
      fprintf(stderr, "fhscheme: cannot open %s\n", g_argv[i]);
      status = 66;
      break;
    }
    Port *fp = calloc(1, sizeof *fp);
    fp->f = f;
    fp->input = 1;
    fp->peeked = -2;
    status = run_port(fp);
    fclose(f);
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
  heap_detach_thread();
  g_status = status;
  return NULL;
}

int main(int argc, char **argv) {
  g_argc = argc;
  g_argv = argv;
  heap_init(argc, argv);
  /* The interpreter recurses in C for non-tail calls: run it on a thread
   * with a large stack (address space only until touched). */
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, (size_t)1 << 30);
  pthread_t th;
  if (pthread_create(&th, &at, interp_main, NULL) != 0) {
    perror("fhscheme: pthread_create");
    return 2;
  }
  pthread_join(th, NULL);
  heap_fini();
  return g_status;
}
