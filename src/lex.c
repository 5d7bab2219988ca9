/*
 * lex.c — source bytes to tokens.
 *
 * TC's lexical structure is small: identifiers, decimal integer and float
 * literals, a fixed set of punctuators and `#` comments running to the end of
 * the line.  Keywords (`def`, `where`, `in`, `exists`, type names,
 * boundary-condition names) are ordinary identifiers: the parser recognizes
 * them by context, so a tensor may be called `in` without trouble.
 *
 * A `.` is a punctuator only directly before a name (schedule directives,
 * `O.split(y, yo, yi, 64)`); elsewhere it begins a float or is an error.
 *
 * Punctuators are matched longest first (`+=!` before `+=` before `+`).  The
 * reduction operators `min=` and `max=` (and their `!` forms) start with an
 * identifier, so they are recognized when the identifier `min`/`max` is
 * directly followed by `=` that does not begin `==`; `min(a, b)` and
 * `min == x` stay an identifier.
 *
 * Literals: digits alone are an int32 literal (one that does not fit is an
 * error: TC literals are int32); a `.` or an exponent makes a float literal.
 * The float value is converted by strtod from a string of the digits and a
 * decimal exponent only, never a decimal point, so the conversion does not
 * depend on the C locale of the process that embeds tensorc.
 *
 * Every other byte — including NUL, control characters and anything outside
 * ASCII — is a located error.  Lines and columns are 1-based; a tab counts as
 * one column (the diagnostic renderer copies tabs under the caret).  The
 * TK_EOF token sits right after the last token, so "missing '}'" points at
 * the end of the program rather than at an empty line past it.
 */
#include "tc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN 4096

typedef struct Lexer {
  Ctx *c;
  const char *p, *end;
  Loc loc; /* of *p */
} Lexer;

/* Longest first: every entry precedes its prefixes. */
static const char *const puncts[] = {
    "+=!", "*=!", "->", "<=", ">=", "==", "!=", "&&", "||", "+=", "*=",
    "(",   ")",   "[",  "]",  "{",  "}",  ",",  ":",  ";",  "?",  "+",
    "-",   "*",   "/",  "%",  "!",  "<",  ">",  "=",
};

static bool is_digit(int ch) { return ch >= '0' && ch <= '9'; }
static bool is_ident_start(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}
static bool is_ident_char(int ch) { return is_ident_start(ch) || is_digit(ch); }

/* A token's length; absurdly long ones are refused (lengths are ints). */
static int token_len(Lexer *L, Loc loc, size_t n) {
  if (n > MAX_TOKEN)
    error_at(L->c, loc, "token too long (more than %d characters)", MAX_TOKEN);
  return (int)n;
}

static int peek(const Lexer *L, size_t k) {
  return L->p + k < L->end ? (unsigned char)L->p[k] : -1;
}

static void advance(Lexer *L, size_t n) {
  for (size_t i = 0; i < n && L->p < L->end; i++, L->p++) {
    if (*L->p == '\n') {
      L->loc.line += L->loc.line < INT32_MAX;
      L->loc.col = 1;
    } else {
      L->loc.col += L->loc.col < INT32_MAX;
    }
  }
}

static void skip_space_and_comments(Lexer *L) {
  for (;;) {
    int ch = peek(L, 0);
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      advance(L, 1);
    } else if (ch == '#') {
      while (L->p < L->end && *L->p != '\n')
        advance(L, 1);
    } else {
      return;
    }
  }
}

/* Decimal digits of [s, e) into an int32, or an error at `loc`. */
static int64_t int_value(Lexer *L, const char *s, const char *e, Loc loc) {
  int64_t v = 0;
  for (; s < e; s++) {
    v = v * 10 + (*s - '0');
    if (v > INT32_MAX)
      error_at(L->c, loc, "integer literal too large (literals are int32: at most %d)",
               INT32_MAX);
  }
  return v;
}

/* The value of the float literal [s, e): digits, an optional '.', more
 * digits, an optional exponent (already validated by read_number). */
static double float_value(Lexer *L, const char *s, const char *e, Loc loc) {
  /* digits + "e" + exponent, no decimal point: locale-independent */
  char *buf = arena_alloc(L->c->arena, (size_t)(e - s) + 32);
  size_t n = 0;
  long exp10 = 0;
  bool frac = false;
  const char *q = s;
  for (; q < e && *q != 'e' && *q != 'E'; q++) {
    if (*q == '.') {
      frac = true;
      continue;
    }
    buf[n++] = *q;
    if (frac)
      exp10--;
  }
  if (n == 0)
    buf[n++] = '0';
  if (q < e) { /* exponent: clamp its magnitude, the value is 0 or inf anyway */
    q++;
    bool neg = *q == '-';
    if (*q == '+' || *q == '-')
      q++;
    long x = 0;
    for (; q < e; q++)
      if (x < 100000000)
        x = x * 10 + (*q - '0');
    exp10 += neg ? -x : x;
  }
  snprintf(buf + n, 32, "e%ld", exp10);
  double v = strtod(buf, NULL);
  if (isinf(v))
    error_at(L->c, loc, "floating-point literal out of range");
  return v;
}

/* INTEGER := digit+      FLOAT := digits '.' digits* | '.' digit+ ... [exponent] */
static void read_number(Lexer *L, Token *t) {
  const char *s = L->p, *q = s;
  bool is_float = false;
  while (q < L->end && is_digit(*q))
    q++;
  if (q < L->end && *q == '.') {
    is_float = true;
    for (q++; q < L->end && is_digit(*q); q++)
      ;
  }
  if (q < L->end && (*q == 'e' || *q == 'E')) {
    const char *r = q + 1;
    if (r < L->end && (*r == '+' || *r == '-'))
      r++;
    if (r < L->end && is_digit(*r)) {
      is_float = true;
      for (q = r; q < L->end && is_digit(*q); q++)
        ;
    }
  }
  if (q < L->end && (is_ident_char(*q) || *q == '.')) {
    const char *r = q;
    while (r < L->end && (is_ident_char(*r) || *r == '.') && r - s < 40)
      r++;
    error_at(L->c, t->loc, "malformed number '%.*s'", (int)(r - s), s);
  }
  t->s = s;
  if (!is_float) {
    t->kind = TK_INT;
    t->ival = int_value(L, s, q, t->loc);
  }
  t->len = token_len(L, t->loc, (size_t)(q - s));
  if (is_float) {
    t->kind = TK_FLOAT;
    t->fval = float_value(L, s, q, t->loc);
  }
  advance(L, (size_t)(q - s));
}

/* IDENT := [A-Za-z_][A-Za-z0-9_]*, or one of min= max= min=! max=! */
static void read_ident(Lexer *L, Token *t) {
  const char *q = L->p;
  while (q < L->end && is_ident_char(*q))
    q++;
  size_t n = (size_t)(q - L->p);
  t->kind = TK_IDENT;
  if (n == 3 && (!memcmp(L->p, "min", 3) || !memcmp(L->p, "max", 3)) && q < L->end &&
      *q == '=' && !(q + 1 < L->end && q[1] == '=')) {
    t->kind = TK_PUNCT;
    n += (q + 1 < L->end && q[1] == '!') ? 2 : 1;
  }
  t->s = L->p;
  t->len = token_len(L, t->loc, n);
  advance(L, n);
}

static bool read_punct(Lexer *L, Token *t) {
  for (size_t i = 0; i < sizeof puncts / sizeof puncts[0]; i++) {
    size_t n = strlen(puncts[i]);
    if ((size_t)(L->end - L->p) >= n && !memcmp(L->p, puncts[i], n)) {
      t->kind = TK_PUNCT;
      t->s = L->p;
      t->len = (int)n;
      advance(L, n);
      return true;
    }
  }
  return false;
}

/* `.` directly before a name: the method call of a schedule directive
 * (`O.split(...)`); anywhere else a lone `.` is no token. */
static void read_dot(Lexer *L, Token *t) {
  t->kind = TK_PUNCT;
  t->s = L->p;
  t->len = 1;
  advance(L, 1);
}

TC_NORETURN static void bad_char(Lexer *L) {
  int ch = peek(L, 0);
  if (ch == '&' || ch == '|')
    error_at(L->c, L->loc, "unexpected character '%c' (did you mean '%c%c'?)", ch, ch, ch);
  if (ch > ' ' && ch < 127)
    error_at(L->c, L->loc, "unexpected character '%c'", ch);
  error_at(L->c, L->loc, "unexpected character (byte 0x%02x)", (unsigned)ch);
}

Token *lex_tokenize(Ctx *c, int *ntokens) {
  Lexer L = {c, c->file->text, c->file->text + c->file->len, {1, 1}};
  if (!L.p)
    L.end = L.p = "";
  VEC(Token) toks = {NULL, 0, 0};
  Loc eof = {1, 1};
  for (;;) {
    skip_space_and_comments(&L);
    if (L.p >= L.end)
      break;
    Token t = {0};
    t.loc = L.loc;
    int ch = peek(&L, 0);
    if (is_digit(ch) || (ch == '.' && is_digit(peek(&L, 1))))
      read_number(&L, &t);
    else if (is_ident_start(ch))
      read_ident(&L, &t);
    else if (ch == '.' && is_ident_start(peek(&L, 1)))
      read_dot(&L, &t);
    else if (!read_punct(&L, &t))
      bad_char(&L);

    eof = (Loc){t.loc.line, t.loc.col + t.len};
    vec_push(c->arena, &toks, t);
  }
  Token t = {0};
  t.kind = TK_EOF;
  t.s = L.end;
  t.loc = eof;
  vec_push(c->arena, &toks, t);
  if (ntokens)
    *ntokens = toks.len;
  return toks.data;
}
