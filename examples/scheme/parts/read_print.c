/* fhscheme, the reader and the printer: part of scheme.c's one translation unit (included
 * there, never compiled alone), so statics and inlining cross parts. */
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
