/* libcudart.so.12 / .so.13 stand-in: the runtime API names and signatures the collector probes.
 * Built twice from this file with the two SONAMEs current wheels ship. */
#include <stdlib.h>
#include "fake_gpu.h"

static uint64_t kernel_ns(void **args)
{
	return args && args[0] ? *(const uint64_t *)args[0] : 1000;
}

FAKE_API cudaError_t cudaLaunchKernel(const void *func, dim3 grid, dim3 block, void **args, size_t shmem,
				      cudaStream_t stream)
{
	(void)func; (void)grid; (void)block; (void)shmem;
	fakegpu_host_overhead();
	fakegpu_enqueue(kernel_ns(args), stream);
	return 0;
}

FAKE_API cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 grid, dim3 block, void **args, size_t shmem,
					   cudaStream_t stream)
{
	(void)func; (void)grid; (void)block; (void)shmem;
	fakegpu_host_overhead();
	fakegpu_enqueue(kernel_ns(args) + 1, stream);
	return 0;
}

FAKE_API cudaError_t cudaGraphLaunch(void *exec, cudaStream_t stream)
{
	(void)exec;
	fakegpu_host_overhead();
	fakegpu_enqueue(20000, stream);
	return 0;
}

FAKE_API cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, int kind)
{
	(void)dst; (void)src; (void)kind;
	fakegpu_enqueue(fakegpu_copy_ns(n), NULL);
	fakegpu_wait_idle();
	return 0;
}

FAKE_API cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, cudaStream_t stream)
{
	(void)dst; (void)src; (void)kind;
	fakegpu_enqueue(fakegpu_copy_ns(n), stream);
	return 0;
}

FAKE_API cudaError_t cudaStreamSynchronize(cudaStream_t stream) { (void)stream; fakegpu_wait_idle(); return 0; }
FAKE_API cudaError_t cudaDeviceSynchronize(void) { fakegpu_wait_idle(); return 0; }
FAKE_API cudaError_t cudaEventSynchronize(void *event) { (void)event; fakegpu_wait_idle(); return 0; }

FAKE_API cudaError_t cudaMalloc(void **p, size_t n)
{
	if (!p)
		return 1; /* cudaErrorInvalidValue */
	*p = calloc(1, n ? n : 1);
	return *p ? 0 : 2; /* cudaErrorMemoryAllocation */
}

FAKE_API cudaError_t cudaFree(void *p) { free(p); return 0; }
