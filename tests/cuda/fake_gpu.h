/*
 * A stand-in for a GPU, for tests on machines without one: one "device" thread that runs queued
 * work items by sleeping for their GPU time, and a host-side wait until the queue drains.
 *
 * libcuda.so.1 (fake_cuda.c) owns the device and exports these entry points; the fake
 * libcudart and libnccl call them the way the real runtime calls the driver: through entry
 * points that are not the public API, so a probe on cuLaunchKernel never fires inside
 * cudaLaunchKernel.
 */
#ifndef FAKE_GPU_H
#define FAKE_GPU_H
#include <stddef.h>
#include <stdint.h>

/* Queues `gpu_ns` of device work on `stream`. */
void fakegpu_enqueue(uint64_t gpu_ns, const void *stream);
/* Blocks until every queued item has run (a futex wait on the device's condition variable). */
void fakegpu_wait_idle(void);
/* Burns `ns` of host CPU: the driver's per-call overhead (FAKECUDA_LAUNCH_NS, default 4000). */
void fakegpu_host_overhead(void);
/* Device time of a copy of `bytes` (10 GB/s). */
uint64_t fakegpu_copy_ns(size_t bytes);

/* How the tests spell the CUDA/NCCL types: the real ABI (pointers, 32-bit enums, dim3). */
typedef struct { unsigned int x, y, z; } dim3;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUstream_st *CUstream;
typedef struct CUfunc_st *CUfunction;
typedef unsigned long long CUdeviceptr;
typedef int cudaError_t;
typedef int CUresult;
typedef int ncclResult_t;
typedef int ncclDataType_t;
typedef int ncclRedOp_t;
typedef struct ncclComm *ncclComm_t;

#define FAKE_API __attribute__((visibility("default"), noinline))
#endif
