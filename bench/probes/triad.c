/*
 * triad.c -- the triad-bandwidth probe: the machine's memory bandwidth.
 *
 * STREAM's triad a[i] = b[i] + s * c[i] over three float arrays far larger
 * than the last-level cache, split in equal contiguous slices over one
 * thread per core (pthreads).  Each thread touches its own slice first, so
 * pages live near it.  Bytes count as STREAM counts them: 3 x 4 bytes per
 * element (two reads, one write; the write-allocate read is not counted),
 * which is also how the benchmark harness counts a workload's bytes.  The
 * rate is the best of several repetitions, each timed from a barrier to the
 * last thread's end.
 *
 *   triad [THREADS [MIB_PER_ARRAY]]    prints "triad_gbs THREADS MIB GBS"
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define REPS 10

typedef struct {
  float *a, *b, *c;
  long lo, hi;
  int reps;
  pthread_barrier_t *bar;
  double *times;  /* per repetition, written by thread 0 */
} Job;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void triad(float *restrict a, const float *restrict b, const float *restrict c,
                  float s, long lo, long hi) {
  for (long i = lo; i < hi; i++)
    a[i] = b[i] + s * c[i];
}

static void *work(void *arg) {
  Job *j = arg;
  for (long i = j->lo; i < j->hi; i++) { /* first touch */
    j->a[i] = 0.0f;
    j->b[i] = 1.0f;
    j->c[i] = 2.0f;
  }
  for (int r = 0; r < j->reps; r++) {
    pthread_barrier_wait(j->bar);
    double t0 = now();
    triad(j->a, j->b, j->c, 0.5f + (float)r, j->lo, j->hi);
    pthread_barrier_wait(j->bar);
    if (j->times)
      j->times[r] = now() - t0;
  }
  return NULL;
}

int main(int argc, char **argv) {
  int nthreads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  long mib = argc > 2 ? atol(argv[2]) : 256;
  if (nthreads < 1)
    nthreads = 1;
  if (mib < 1)
    mib = 1;
  long n = mib * 1024 * 1024 / (long)sizeof(float);
  float *a = aligned_alloc(64, (size_t)n * sizeof(float));
  float *b = aligned_alloc(64, (size_t)n * sizeof(float));
  float *c = aligned_alloc(64, (size_t)n * sizeof(float));
  pthread_t *tid = malloc(sizeof *tid * (size_t)nthreads);
  Job *jobs = malloc(sizeof *jobs * (size_t)nthreads);
  double times[REPS];
  pthread_barrier_t bar;
  if (!a || !b || !c || !tid || !jobs) {
    fprintf(stderr, "triad: out of memory\n");
    return 1;
  }
  pthread_barrier_init(&bar, NULL, (unsigned)nthreads);
  for (int t = 0; t < nthreads; t++) {
    long chunk = (n + nthreads - 1) / nthreads;
    long lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
    jobs[t] = (Job){a, b, c, lo, hi, REPS, &bar, t == 0 ? times : NULL};
    pthread_create(&tid[t], NULL, work, &jobs[t]);
  }
  for (int t = 0; t < nthreads; t++)
    pthread_join(tid[t], NULL);
  double best = 1e30;
  for (int r = 1; r < REPS; r++) /* the first repetition warms up */
    if (times[r] < best)
      best = times[r];
  double check = 0; /* a[i] = 1 + 2 s for the last s */
  for (long i = 0; i < n; i += 4099)
    check += a[i] - (1.0f + 2.0f * (0.5f + (REPS - 1)));
  if (check != 0)
    fprintf(stderr, "triad: wrong result (%g)\n", check);
  printf("triad_gbs %d %ld %.2f\n", nthreads, mib, 3.0 * 4.0 * (double)n / best * 1e-9);
  pthread_barrier_destroy(&bar);
  free(a);
  free(b);
  free(c);
  free(tid);
  free(jobs);
  return check != 0;
}
