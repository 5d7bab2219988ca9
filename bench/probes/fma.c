/*
 * fma.c -- the FMA-throughput probe: the machine's peak float32 rate.
 *
 * Every thread (one per core, pthreads) runs CHAINS independent chains of
 * fused multiply-adds on the widest vectors the compiler targets with
 * -march=native (GCC/Clang vector extensions; contracted to FMA
 * instructions by -ffp-contract=fast), enough chains to cover the FMA
 * latency on every pipe.  The threads start together at a barrier and time
 * themselves (the main thread only waits: on a machine with as many cores as
 * workers it would not be scheduled to take the time); the rate is the flops
 * of all threads over the span from the first start to the last end, best
 * of several repetitions.  One FMA counts as two flops per lane.
 *
 *   fma [THREADS]      prints "fma_gflops THREADS LANES GFLOPS"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__AVX512F__)
#define VBYTES 64
#define CHAINS 16   /* independent accumulators: latency x pipes, with room */
#elif defined(__AVX__)
#define VBYTES 32
#define CHAINS 12   /* 16 registers: 12 chains, the multiplier and the addend */
#else
#define VBYTES 16
#define CHAINS 12
#endif
#define LANES (VBYTES / 4)
#define ITERS 10000000L
#define REPS 5

typedef float vf __attribute__((vector_size(VBYTES)));

typedef struct {
  pthread_barrier_t *start;
  float seed;  /* a run-time value: nothing folds at compile time */
  float sink;  /* the sum of the chains: keeps them live */
  double t0, t1; /* this thread's start and end */
} Job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *work(void *arg) {
  Job *j = arg;
  vf acc[CHAINS], m, a;
  for (int l = 0; l < LANES; l++) {
    m[l] = 1.0f - j->seed * 1e-9f; /* |m| < 1 and a small: values stay finite */
    a[l] = j->seed * 1e-7f;
  }
  for (int c = 0; c < CHAINS; c++)
    acc[c] = m * (float)c;
  pthread_barrier_wait(j->start);
  j->t0 = now();
  for (long i = 0; i < ITERS; i++) {
#pragma GCC unroll 16
    for (int c = 0; c < CHAINS; c++)
      acc[c] = acc[c] * m + a;
  }
  float s = 0;
  for (int c = 0; c < CHAINS; c++)
    for (int l = 0; l < LANES; l++)
      s += acc[c][l];
  j->t1 = now();
  j->sink = s;
  return NULL;
}

static double run_once(int nthreads, float seed) {
  pthread_t *tid = malloc(sizeof *tid * (size_t)nthreads);
  Job *jobs = malloc(sizeof *jobs * (size_t)nthreads);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)nthreads);
  for (int t = 0; t < nthreads; t++) {
    jobs[t] = (Job){&start, seed + (float)t, 0, 0, 0};
    pthread_create(&tid[t], NULL, work, &jobs[t]);
  }
  float sink = 0;
  double t0 = 1e300, t1 = 0;
  for (int t = 0; t < nthreads; t++) {
    pthread_join(tid[t], NULL);
    sink += jobs[t].sink;
    t0 = jobs[t].t0 < t0 ? jobs[t].t0 : t0;
    t1 = jobs[t].t1 > t1 ? jobs[t].t1 : t1;
  }
  double dt = t1 - t0;
  if (sink == 12345.0f) /* never: the results are used */
    fprintf(stderr, "%g\n", sink);
  pthread_barrier_destroy(&start);
  free(tid);
  free(jobs);
  return dt;
}

int main(int argc, char **argv) {
  int nthreads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (nthreads < 1)
    nthreads = 1;
  double best = 1e30;
  for (int r = 0; r < REPS; r++) {
    double dt = run_once(nthreads, (float)(argc + r));
    if (dt < best)
      best = dt;
  }
  double flops = 2.0 * LANES * CHAINS * (double)ITERS * nthreads;
  printf("fma_gflops %d %d %.2f\n", nthreads, LANES, flops / best * 1e-9);
  return 0;
}
