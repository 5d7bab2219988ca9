/* unit.h — a tiny unit-test harness: TEST(name) { ... CHECK(cond); }, and
 * RUN_TESTS() in main.  Prints "N passed, M failed" and exits non-zero on
 * failure. */
#ifndef TC_UNIT_H
#define TC_UNIT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *name;
  void (*fn)(void);
} UnitTest;

static int unit_failures_in_test;
static UnitTest unit_tests[512];
static int unit_ntests;

#define TEST(tname)                                                           \
  static void tname(void);                                                    \
  __attribute__((constructor)) static void reg_##tname(void) {                \
    unit_tests[unit_ntests].name = #tname;                                    \
    unit_tests[unit_ntests++].fn = tname;                                     \
  }                                                                           \
  static void tname(void)

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      unit_failures_in_test++;                                                \
    }                                                                         \
  } while (0)

#define CHECK_STR(a, b)                                                       \
  do {                                                                        \
    const char *a_ = (a), *b_ = (b);                                          \
    if (!a_ || !b_ || strcmp(a_, b_)) {                                       \
      fprintf(stderr, "%s:%d: CHECK_STR failed:\n  got:      %s\n  expected: %s\n", \
              __FILE__, __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)");    \
      unit_failures_in_test++;                                                \
    }                                                                         \
  } while (0)

#define CHECK_INT(a, b)                                                       \
  do {                                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);                       \
    if (a_ != b_) {                                                           \
      fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n", \
              __FILE__, __LINE__, #a, a_, b_);                                \
      unit_failures_in_test++;                                                \
    }                                                                         \
  } while (0)

static inline int unit_run_all(void) {
  int passed = 0, failed = 0;
  for (int i = 0; i < unit_ntests; i++) {
    unit_failures_in_test = 0;
    unit_tests[i].fn();
    if (unit_failures_in_test) {
      fprintf(stderr, "FAIL %s\n", unit_tests[i].name);
      failed++;
    } else {
      passed++;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
#define RUN_TESTS() int main(void) { return unit_run_all(); }
#endif
