// The persistent worker pool shared by the int8 runtime and the float kernels (pool.c); Swift
// reaches it through OctetCore's WorkerPool.
#pragma once
#include <stddef.h>

/// A pool of `threads - 1` persistent workers (pool.c). `octet_pool_run` runs fn(ctx, t) for
/// t in 0 ..< tasks on the workers and the calling thread and returns when all are done; while
/// another run is in progress (or without workers) the caller runs its tasks itself, in order.
typedef struct octet_pool octet_pool;
typedef void (*octet_task_fn)(void* ctx, size_t task);
/// NULL if out of memory (octet_pool_run then runs tasks on the caller).
octet_pool* octet_pool_create(size_t threads);
void octet_pool_run(octet_pool* pool, size_t tasks, octet_task_fn fn, void* ctx);
void octet_pool_destroy(octet_pool* pool);
