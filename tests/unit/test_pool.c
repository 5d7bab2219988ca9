/* test_pool.c — the thread pool: every index of a range is visited exactly
 * once, concurrent callers (which run serially when the pool is busy), nested
 * calls, many tiny jobs, and ranges that do not start at 0. */
#include "tc.h"
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
  atomic_llong sum;
  atomic_int calls;
  atomic_int *hits; /* per index, or NULL */
  int64_t base;
} SumJob;

static void sum_task(const void *args, int64_t lo, int64_t hi) {
  SumJob *j = (SumJob *)args;
  long long s = 0;
  for (int64_t i = lo; i < hi; i++) {
    s += i;
    if (j->hits)
      atomic_fetch_add(&j->hits[i - j->base], 1);
  }
  atomic_fetch_add(&j->sum, s);
  atomic_fetch_add(&j->calls, 1);
}

static long long range_sum(int64_t lo, int64_t hi) {
  long long s = 0;
  for (int64_t i = lo; i < hi; i++)
    s += i;
  return s;
}

/* Runs [lo, hi) and checks every index was hit exactly once. */
static void check_range(Pool *p, int64_t lo, int64_t hi) {
  int64_t n = hi > lo ? hi - lo : 0;
  atomic_int *hits = calloc((size_t)(n ? n : 1), sizeof *hits);
  SumJob j = {.hits = hits, .base = lo};
  atomic_init(&j.sum, 0);
  atomic_init(&j.calls, 0);
  pool_parallel_for(p, sum_task, &j, lo, hi);
  CHECK_INT(atomic_load(&j.sum), range_sum(lo, hi));
  int bad = 0;
  for (int64_t i = 0; i < n; i++)
    bad += atomic_load(&hits[i]) != 1;
  CHECK_INT(bad, 0);
  free(hits);
}

TEST(serial_pool) {
  Pool *p = pool_new(1);
  CHECK_INT(pool_threads(p), 1);
  check_range(p, 0, 1000);
  check_range(p, -5, 5);
  check_range(p, 3, 3);
  pool_free(p);
  pool_free(NULL);
}

TEST(sums_over_ranges) {
  Pool *p = pool_new(4);
  CHECK_INT(pool_threads(p), 4);
  int64_t cases[][2] = {{0, 1},   {0, 2},    {0, 3},        {0, 15},      {0, 16},
                        {0, 17},  {7, 8},    {-100, 100},   {5, 1005},    {0, 100003},
                        {10, 10}, {10, 5},   {-7, -3},      {1000, 1001}, {0, 64}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_range(p, cases[i][0], cases[i][1]);
  pool_free(p);
}

TEST(chunks_about_four_per_thread) {
  Pool *p = pool_new(4);
  SumJob j = {0};
  atomic_init(&j.sum, 0);
  atomic_init(&j.calls, 0);
  pool_parallel_for(p, sum_task, &j, 0, 1000);
  CHECK(atomic_load(&j.calls) >= 4 && atomic_load(&j.calls) <= 16);
  CHECK_INT(atomic_load(&j.sum), range_sum(0, 1000));
  pool_free(p);
}

/* A task that records which threads ran it. */
typedef struct {
  pthread_t ids[64];
  atomic_int n;
} Threads;

static void who_task(const void *args, int64_t lo, int64_t hi) {
  Threads *t = (Threads *)args;
  volatile double x = 0;
  for (int64_t i = lo; i < hi; i++)
    for (int k = 0; k < 20000; k++)
      x += (double)k;
  int i = atomic_fetch_add(&t->n, 1);
  if (i < 64)
    t->ids[i] = pthread_self();
}

TEST(work_is_spread_over_threads) {
  Pool *p = pool_new(4);
  Threads t;
  atomic_init(&t.n, 0);
  pool_parallel_for(p, who_task, &t, 0, 256);
  int distinct = 0, n = atomic_load(&t.n) < 64 ? atomic_load(&t.n) : 64;
  for (int i = 0; i < n; i++) {
    int seen = 0;
    for (int k = 0; k < i; k++)
      seen |= pthread_equal(t.ids[i], t.ids[k]);
    distinct += !seen;
  }
  CHECK(distinct >= 2); /* several threads took chunks */
  pool_free(p);
}

typedef struct {
  Pool *pool;
  int reps;
  int failures;
} Caller;

static void *caller_main(void *arg) {
  Caller *c = arg;
  for (int r = 0; r < c->reps; r++) {
    int64_t lo = r % 7, hi = lo + 1 + (r * 37) % 500;
    SumJob j = {0};
    atomic_init(&j.sum, 0);
    atomic_init(&j.calls, 0);
    pool_parallel_for(c->pool, sum_task, &j, lo, hi);
    if (atomic_load(&j.sum) != range_sum(lo, hi))
      c->failures++;
  }
  return NULL;
}

TEST(concurrent_callers) {
  Pool *p = pool_new(3);
  pthread_t th[6];
  Caller c[6];
  for (int i = 0; i < 6; i++) {
    c[i] = (Caller){p, 2000, 0};
    pthread_create(&th[i], NULL, caller_main, &c[i]);
  }
  int failures = 0;
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    failures += c[i].failures;
  }
  CHECK_INT(failures, 0);
  pool_free(p);
}

/* A task that starts a nested parallel loop: must run serially, not hang. */
typedef struct {
  Pool *pool;
  atomic_llong sum;
} Nested;

static void inner_task(const void *args, int64_t lo, int64_t hi) {
  Nested *n = (Nested *)args;
  for (int64_t i = lo; i < hi; i++)
    atomic_fetch_add(&n->sum, i);
}

static void outer_task(const void *args, int64_t lo, int64_t hi) {
  Nested *n = (Nested *)args;
  for (int64_t i = lo; i < hi; i++)
    pool_parallel_for(n->pool, inner_task, n, 0, 100);
}

TEST(nested_calls_run_serially) {
  Pool *p = pool_new(4);
  Nested n = {p, 0};
  atomic_init(&n.sum, 0);
  pool_parallel_for(p, outer_task, &n, 0, 50);
  CHECK_INT(atomic_load(&n.sum), 50LL * range_sum(0, 100));
  pool_free(p);
}

TEST(many_tiny_jobs) {
  Pool *p = pool_new(4);
  int bad = 0;
  for (int r = 0; r < 20000; r++) {
    SumJob j = {0};
    atomic_init(&j.sum, 0);
    atomic_init(&j.calls, 0);
    int64_t hi = 1 + r % 9;
    pool_parallel_for(p, sum_task, &j, 0, hi);
    bad += atomic_load(&j.sum) != range_sum(0, hi);
  }
  CHECK_INT(bad, 0);
  pool_free(p);
}

TEST(create_and_free_repeatedly) {
  for (int r = 0; r < 50; r++) {
    Pool *p = pool_new(1 + r % 5);
    if (r % 2)
      check_range(p, 0, 100);
    pool_free(p);
  }
}

RUN_TESTS()
