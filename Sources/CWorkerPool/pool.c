// A persistent worker pool for the layers of one network run. Dispatching a layer's tasks through
// GCD woke a sleeping worker for every layer (tens of microseconds each, 50+ layers per image) and
// left the second core idle at the start of each layer; here the workers spin briefly between
// layers, then sleep on a condition variable.
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include "CWorkerPool.h"

struct octet_pool {
  size_t workers;
  pthread_t* threads;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  atomic_flag busy;  // one run at a time; a concurrent caller runs its tasks itself
  // The current job. `next` packs the job's generation (bits 40-63), its number of tasks (20-39)
  // and the next task index (0-19); a job is published by storing a new generation with index 0
  // after writing fn and ctx. Tasks are taken by compare-and-swap on `next`: a successful swap
  // proves the job is still current, and its task unfinished, so fn and ctx are that job's.
  _Atomic(octet_task_fn) fn;
  _Atomic(void*) ctx;
  atomic_uint_least64_t next;
  atomic_size_t done;
  atomic_int sleepers;
  atomic_int stop;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

#define POOL_FIELD 0xFFFFFu
#define POOL_MAX_TASKS POOL_FIELD

/// Takes and runs tasks of job `generation` until none is left or another job has started.
static void drain(octet_pool* p, uint64_t generation) {
  uint64_t v = atomic_load_explicit(&p->next, memory_order_acquire);
  for (;;) {
    if (v >> 40 != generation || (v & POOL_FIELD) >= ((v >> 20) & POOL_FIELD)) return;
    if (!atomic_compare_exchange_weak_explicit(&p->next, &v, v + 1, memory_order_acq_rel, memory_order_acquire))
      continue;
    const octet_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
    fn(atomic_load_explicit(&p->ctx, memory_order_relaxed), (size_t)(v & POOL_FIELD));
    atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    v = atomic_load_explicit(&p->next, memory_order_acquire);
  }
}

static void* worker(void* arg) {
  octet_pool* p = arg;
  uint64_t seen = 0;
  for (;;) {
    // Spin up to 200 us for the next layer, then sleep until woken.
    const uint64_t until = now_ns() + 200000;
    uint64_t g;
    for (unsigned spins = 0;; spins++) {
      g = atomic_load_explicit(&p->next, memory_order_acquire) >> 40;
      if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
      cpu_relax();
      // With more threads than free cores, spinning would take the core of the thread that has
      // the work: give it up now and then.
      if ((spins & 63) == 63) sched_yield();
      if ((spins & 255) == 255 && now_ns() > until) {
        pthread_mutex_lock(&p->mutex);
        atomic_fetch_add(&p->sleepers, 1);
        while (atomic_load(&p->next) >> 40 == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->mutex);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->mutex);
      }
    }
    if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
    seen = g;
    drain(p, g);
  }
}

octet_pool* octet_pool_create(size_t threads) {
  octet_pool* p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  pthread_mutex_init(&p->mutex, NULL);
  pthread_cond_init(&p->wake, NULL);
  atomic_flag_clear(&p->busy);
  const size_t want = threads > 1 ? threads - 1 : 0;
  p->threads = want ? calloc(want, sizeof(pthread_t)) : NULL;
  for (size_t i = 0; i < want && p->threads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
    p->workers++;
  }
  return p;
}

void octet_pool_run(octet_pool* p, size_t tasks, octet_task_fn fn, void* ctx) {
  if (p == NULL || p->workers == 0 || tasks <= 1 || tasks > POOL_MAX_TASKS ||
      atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire)) {
    for (size_t t = 0; t < tasks; t++) fn(ctx, t);
    return;
  }
  atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
  atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  const uint64_t generation = ((atomic_load_explicit(&p->next, memory_order_relaxed) >> 40) + 1) & 0xFFFFFFu;
  atomic_store_explicit(&p->next, generation << 40 | (uint64_t)tasks << 20, memory_order_release);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mutex);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
  }
  drain(p, generation);
  for (unsigned spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < tasks; spins++) {
    cpu_relax();
    if ((spins & 63) == 63) sched_yield();
  }
  atomic_flag_clear_explicit(&p->busy, memory_order_release);
}

void octet_pool_destroy(octet_pool* p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mutex);
  atomic_store(&p->stop, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mutex);
  for (size_t i = 0; i < p->workers; i++) pthread_join(p->threads[i], NULL);
  free(p->threads);
  pthread_mutex_destroy(&p->mutex);
  pthread_cond_destroy(&p->wake);
  free(p);
}
