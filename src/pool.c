/*
 * pool.c — the thread pool that runs a kernel's parallel loops.
 *
 * tensorc does not use OpenMP: kernels call back into the runtime
 * (tc_krt.parallel_for), which lands here, so tensorc's threads are its own
 * and compose with whatever threads the host application (PyTorch, say) runs.
 *
 * A pool of N threads is N-1 workers plus the caller, which always works on
 * its own job.  A job splits [lo, hi) into chunks, about four per thread so
 * that uneven chunks even out; workers and the caller take chunk numbers
 * from an atomic counter until none is left.  The caller returns once every
 * worker that joined the job has left it, so the job's arguments (on the
 * caller's stack) are never touched after the return.
 *
 * One job runs at a time.  A caller that finds the pool busy — another
 * thread's kernel, or a parallel loop nested inside a task — runs its range
 * serially on its own thread instead of waiting: no deadlock, no nesting.
 *
 * Workers sleep on a condition variable between jobs.  A worker joins a job
 * only while the job is open (under the mutex); the caller closes it, under
 * the same mutex, when no worker is inside.  So a late worker can never take
 * a chunk of the next job with the previous job's task.
 */
#include "tc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct Pool {
  int nthreads;            /* including the caller */
  int nworkers;            /* threads actually started */
  pthread_t *workers;
  pthread_mutex_t busy;    /* held by the caller running a job */
  pthread_mutex_t mu;      /* guards everything below */
  pthread_cond_t wake;     /* a job was posted, or quit */
  pthread_cond_t left;     /* a worker left the job */
  uint64_t gen;            /* job number */
  bool open;               /* workers may join the current job */
  bool quit;
  int inside;              /* workers inside the current job */
  /* the current job (written under mu before `gen` changes) */
  tc_task_fn task;
  const void *args;
  int64_t lo, hi, chunk, nchunks;
  atomic_llong next;       /* next chunk number to take */
};

/* Takes chunks until none is left. */
static void work(Pool *p, tc_task_fn task, const void *args, int64_t lo, int64_t hi,
                 int64_t chunk, int64_t nchunks) {
  for (;;) {
    int64_t i = (int64_t)atomic_fetch_add(&p->next, 1);
    if (i >= nchunks)
      return;
    /* unsigned arithmetic: a range may span more than INT64_MAX */
    int64_t a = (int64_t)((uint64_t)lo + (uint64_t)i * (uint64_t)chunk);
    int64_t b = (uint64_t)hi - (uint64_t)a > (uint64_t)chunk ? a + chunk : hi;
    task(args, a, b);
  }
}

static void *worker_main(void *arg) {
  Pool *p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && (p->gen == seen || !p->open))
      pthread_cond_wait(&p->wake, &p->mu);
    if (p->quit)
      break;
    seen = p->gen;
    p->inside++;
    tc_task_fn task = p->task;
    const void *args = p->args;
    int64_t lo = p->lo, hi = p->hi, chunk = p->chunk, nchunks = p->nchunks;
    pthread_mutex_unlock(&p->mu);
    work(p, task, args, lo, hi, chunk, nchunks);
    pthread_mutex_lock(&p->mu);
    if (--p->inside == 0)
      pthread_cond_signal(&p->left);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

Pool *pool_new(int nthreads) {
  Pool *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->nthreads = nthreads < 1 ? 1 : nthreads;
  pthread_mutex_init(&p->busy, NULL);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->left, NULL);
  atomic_init(&p->next, 0);
  if (p->nthreads > 1) {
    p->workers = calloc((size_t)p->nthreads - 1, sizeof *p->workers);
    for (int i = 0; p->workers && i < p->nthreads - 1; i++) {
      if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0)
        break; /* fewer workers: still correct, the caller does the rest */
      p->nworkers++;
    }
  }
  return p;
}

void pool_free(Pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->quit = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->workers[i], NULL);
  free(p->workers);
  pthread_cond_destroy(&p->left);
  pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->busy);
  free(p);
}

int pool_threads(const Pool *p) { return p ? p->nworkers + 1 : 1; }

void pool_parallel_for(Pool *p, tc_task_fn task, const void *args, int64_t lo, int64_t hi) {
  if (hi <= lo)
    return;
  uint64_t n = (uint64_t)hi - (uint64_t)lo;
  if (!p || p->nworkers == 0 || n == 1 || pthread_mutex_trylock(&p->busy) != 0) {
    task(args, lo, hi);
    return;
  }
  uint64_t want = (uint64_t)(p->nworkers + 1) * 4;
  uint64_t chunk = (n + want - 1) / want;
  int64_t nchunks = (int64_t)((n + chunk - 1) / chunk);

  pthread_mutex_lock(&p->mu);
  p->task = task;
  p->args = args;
  p->lo = lo;
  p->hi = hi;
  p->chunk = (int64_t)chunk;
  p->nchunks = nchunks;
  atomic_store(&p->next, 0);
  p->gen++;
  p->open = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  work(p, task, args, lo, hi, (int64_t)chunk, nchunks);

  /* every chunk is taken; wait for the workers still running theirs */
  pthread_mutex_lock(&p->mu);
  while (p->inside > 0)
    pthread_cond_wait(&p->left, &p->mu);
  p->open = false;
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->busy);
}
