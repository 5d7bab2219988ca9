/* test_lex.c — the lexer: token streams, punctuators (longest match, min=/max=),
 * literals, comments, locations and errors. */
#include "tc.h"
#include "unit.h"

#include <math.h>

typedef struct Lexed {
  Arena arena;
  tc_error err;
  tc_status status;
  Token *toks;
  int n;
} Lexed;

/* Lexes `src` (length `len`) like the protected entry point does. */
static void lex_n(Lexed *L, const char *src, size_t len) {
  memset(L, 0, sizeof *L);
  jmp_buf jb, oom;
  L->arena.oom = &oom;
  SrcFile file = {"t.tc", src, len};
  Ctx c = {&L->arena, &file, &L->err, &jb};
  int code = setjmp(jb);
  if (!code)
    code = setjmp(oom);
  if (code) {
    L->status = (tc_status)code;
    return;
  }
  L->toks = lex_tokenize(&c, &L->n);
  L->status = TC_OK;
}

static void lex(Lexed *L, const char *src) { lex_n(L, src, strlen(src)); }

/* The token stream as "kind:text" words: I ident, N int, F float, P punct. */
static char *stream(Lexed *L) {
  static char out[1024];
  size_t k = 0;
  out[0] = '\0';
  for (int i = 0; i < L->n && L->toks[i].kind != TK_EOF; i++) {
    const Token *t = &L->toks[i];
    char kind = "INFP"[t->kind];
    k += (size_t)snprintf(out + k, sizeof out - k, "%s%c:%.*s", i ? " " : "", kind, t->len, t->s);
  }
  return out;
}

TEST(lex_matmul_stream) {
  Lexed L;
  lex(&L, "def mm(float(M,K) A) -> (C) { C(m,n) +=! A(m,k) * 2 }");
  CHECK_INT(L.status, TC_OK);
  CHECK_STR(stream(&L), "I:def I:mm P:( I:float P:( I:M P:, I:K P:) I:A P:) P:-> P:( I:C P:) "
                        "P:{ I:C P:( I:m P:, I:n P:) P:+=! I:A P:( I:m P:, I:k P:) P:* N:2 P:}");
  CHECK_INT(L.toks[L.n - 1].kind, TK_EOF);
  arena_free(&L.arena);
}

TEST(lex_longest_match) {
  Lexed L;
  lex(&L, "+=! += + *=! *= * -> - > >= <= < == = != ! && || ? : ; [ ] % /");
  CHECK_STR(stream(&L), "P:+=! P:+= P:+ P:*=! P:*= P:* P:-> P:- P:> P:>= P:<= P:< P:== P:= "
                        "P:!= P:! P:&& P:|| P:? P:: P:; P:[ P:] P:% P:/");
  arena_free(&L.arena);
  /* '=!' is no token: '=' then '!' */
  lex(&L, "O(i) =!B(i)");
  CHECK_STR(stream(&L), "I:O P:( I:i P:) P:= P:! I:B P:( I:i P:)");
  arena_free(&L.arena);
  lex(&L, "a+=!b a+=b a+b a--b a->b");
  CHECK_STR(stream(&L), "I:a P:+=! I:b I:a P:+= I:b I:a P:+ I:b I:a P:- P:- I:b I:a P:-> I:b");
  arena_free(&L.arena);
}

TEST(lex_min_max_operators) {
  Lexed L;
  lex(&L, "O(i) min= A(i) max=! B min(a,b) max (1) min == x min==x minx= max=!x mi=");
  CHECK_STR(stream(&L), "I:O P:( I:i P:) P:min= I:A P:( I:i P:) P:max=! I:B I:min P:( I:a P:, "
                        "I:b P:) I:max P:( N:1 P:) I:min P:== I:x I:min P:== I:x I:minx P:= "
                        "P:max=! I:x I:mi P:=");
  arena_free(&L.arena);
}

TEST(lex_numbers) {
  Lexed L;
  lex(&L, "0 7 2147483647 1.0 1. .5 1e-3 2.5e+4 3E2 007 0.1");
  CHECK_STR(stream(&L), "N:0 N:7 N:2147483647 F:1.0 F:1. F:.5 F:1e-3 F:2.5e+4 F:3E2 N:007 F:0.1");
  CHECK_INT(L.toks[2].ival, 2147483647);
  CHECK_INT(L.toks[9].ival, 7);
  CHECK(L.toks[3].fval == 1.0);
  CHECK(L.toks[4].fval == 1.0);
  CHECK(L.toks[5].fval == 0.5);
  CHECK(L.toks[6].fval == 1e-3);
  CHECK(L.toks[7].fval == 25000.0);
  CHECK(L.toks[8].fval == 300.0);
  CHECK(L.toks[10].fval == 0.1);
  arena_free(&L.arena);
  /* a number then a name needs a separator; 'e' alone is a name */
  lex(&L, "2*e 1e5 x1 _a9");
  CHECK_STR(stream(&L), "N:2 P:* I:e F:1e5 I:x1 I:_a9");
  arena_free(&L.arena);
  /* 1e-400 underflows to 0 (allowed); digits beyond double precision */
  lex(&L, "1e-400 123456789012345678901234567890.0");
  CHECK(L.toks[0].fval == 0.0);
  CHECK(fabs(L.toks[1].fval - 1.2345678901234568e29) < 1e14);
  arena_free(&L.arena);
}

TEST(lex_locations) {
  Lexed L;
  lex(&L, "# comment ( with ) tokens\n  def\tf # trailing\n\n   x+1");
  CHECK_STR(stream(&L), "I:def I:f I:x P:+ N:1");
  CHECK_INT(L.toks[0].loc.line, 2);
  CHECK_INT(L.toks[0].loc.col, 3);
  CHECK_INT(L.toks[1].loc.col, 7); /* a tab is one column */
  CHECK_INT(L.toks[2].loc.line, 4);
  CHECK_INT(L.toks[2].loc.col, 4);
  CHECK_INT(L.toks[4].loc.col, 6);
  /* EOF sits right after the last token, not on an empty last line */
  CHECK_INT(L.toks[5].kind, TK_EOF);
  CHECK_INT(L.toks[5].loc.line, 4);
  CHECK_INT(L.toks[5].loc.col, 7);
  arena_free(&L.arena);
  lex(&L, "x\r\ny");
  CHECK_INT(L.toks[1].loc.line, 2);
  CHECK_INT(L.toks[1].loc.col, 1);
  arena_free(&L.arena);
}

TEST(lex_empty) {
  Lexed L;
  lex(&L, "");
  CHECK_INT(L.status, TC_OK);
  CHECK_INT(L.n, 1);
  CHECK_INT(L.toks[0].kind, TK_EOF);
  CHECK_INT(L.toks[0].loc.line, 1);
  arena_free(&L.arena);
  lex(&L, "   # just a comment");
  CHECK_INT(L.n, 1);
  arena_free(&L.arena);
}

/* Expects an error with exactly `msg` at line:col. */
static void check_error(const char *src, size_t len, int line, int col, const char *msg) {
  Lexed L;
  lex_n(&L, src, len);
  CHECK_INT(L.status, TC_ERR_PROGRAM);
  CHECK_INT(L.err.line, line);
  CHECK_INT(L.err.col, col);
  CHECK_STR(L.err.message, msg);
  arena_free(&L.arena);
}
#define ERR(src, line, col, msg) check_error(src, sizeof(src) - 1, line, col, msg)

TEST(lex_errors) {
  ERR("x = 2147483648", 1, 5, "integer literal too large (literals are int32: at most 2147483647)");
  ERR("\n  99999999999999999999", 2, 3,
      "integer literal too large (literals are int32: at most 2147483647)");
  ERR("a & b", 1, 3, "unexpected character '&' (did you mean '&&'?)");
  ERR("a | b", 1, 3, "unexpected character '|' (did you mean '||'?)");
  ERR("a @ b", 1, 3, "unexpected character '@'");
  ERR("ab\0c", 1, 3, "unexpected character (byte 0x00)");
  ERR("x\n\xc3\xa9", 2, 1, "unexpected character (byte 0xc3)");
  ERR("\t\x7f", 1, 2, "unexpected character (byte 0x7f)");
  ERR("x = 1e", 1, 5, "malformed number '1e'");
  ERR("x = 1e+", 1, 5, "malformed number '1e'");
  ERR("x = 1.2.3", 1, 5, "malformed number '1.2.3'");
  ERR("x = 2x", 1, 5, "malformed number '2x'");
  ERR("x = 1e999", 1, 5, "floating-point literal out of range");
  ERR("x = . 5", 1, 5, "unexpected character '.'");
  ERR("'s'", 1, 1, "unexpected character '''");
}

TEST(lex_long_tokens) {
  static char src[6000];
  memset(src, 'a', 5000);
  check_error(src, 5000, 1, 1, "token too long (more than 4096 characters)");
  memset(src, '7', 5000);
  check_error(src, 5000, 1, 1, "integer literal too large (literals are int32: at most 2147483647)");
  memset(src, 'b', 4096);
  Lexed L;
  lex_n(&L, src, 4096);
  CHECK_INT(L.status, TC_OK);
  CHECK_INT(L.toks[0].len, 4096);
  arena_free(&L.arena);
}

TEST(lex_not_nul_terminated) {
  /* the source is (text, len): bytes past len are never read */
  char buf[8] = {'a', 'b', '1', '2', 'X', 'X', 'X', 'X'};
  Lexed L;
  lex_n(&L, buf, 2);
  CHECK_STR(stream(&L), "I:ab");
  arena_free(&L.arena);
  lex_n(&L, buf + 2, 2);
  CHECK_STR(stream(&L), "N:12");
  CHECK_INT(L.toks[0].ival, 12);
  arena_free(&L.arena);
  lex_n(&L, NULL, 0);
  CHECK_INT(L.status, TC_OK);
  CHECK_INT(L.n, 1);
  arena_free(&L.arena);
}

RUN_TESTS()
