/*
 * cw-cuda-workload: calls the CUDA runtime, driver and NCCL API (the fake libraries here, or any
 * with the same ABI) in a known pattern and reports how many calls of each it made.
 *
 *   cw-cuda-workload [--iterations N] [--launches L] [--gpu-us U] [--wait-stdin]
 *       each iteration: cudaMemcpyAsync, L × cudaLaunchKernel (U µs of device time each),
 *       cuLaunchKernel, cudaStreamSynchronize; every 10th iteration also every other probed
 *       function once. Prints {"ready": pid} first; with --wait-stdin waits for a line before
 *       running; then prints {"tid": …, "elapsed_ns": …, "calls": {function: count}}.
 *   cw-cuda-workload --bench N
 *       N back-to-back cudaLaunchKernel calls without device work (a launch-bound loop);
 *       prints {"launches": N, "ns_per_launch": …}.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "fake_gpu.h"

cudaError_t cudaLaunchKernel(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaLaunchKernel_ptsz(const void *, dim3, dim3, void **, size_t, cudaStream_t);
cudaError_t cudaGraphLaunch(void *, cudaStream_t);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, int, cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaEventSynchronize(void *);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
CUresult cuLaunchKernel(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream,
			void **, void **);
CUresult cuLaunchKernel_ptsz(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
			     CUstream, void **, void **);
CUresult cuMemcpy(CUdeviceptr, CUdeviceptr, size_t);
CUresult cuMemcpyAsync(CUdeviceptr, CUdeviceptr, size_t, CUstream);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void *, size_t);
CUresult cuMemcpyDtoH_v2(void *, CUdeviceptr, size_t);
CUresult cuMemcpyDtoD_v2(CUdeviceptr, CUdeviceptr, size_t);
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void *, size_t, CUstream);
CUresult cuMemcpyDtoHAsync_v2(void *, CUdeviceptr, size_t, CUstream);
CUresult cuCtxSynchronize(void);
CUresult cuStreamSynchronize(CUstream);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
ncclResult_t ncclAllReduce(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
ncclResult_t ncclAllGather(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
ncclResult_t ncclReduceScatter(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
ncclResult_t ncclBroadcast(const void *, void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
ncclResult_t ncclSend(const void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
ncclResult_t ncclRecv(void *, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);

enum { F_LAUNCH, F_LAUNCH_PTSZ, F_GRAPH, F_MEMCPY, F_MEMCPY_ASYNC, F_STREAM_SYNC, F_DEVICE_SYNC, F_EVENT_SYNC,
       F_MALLOC, F_FREE, F_CU_LAUNCH, F_CU_LAUNCH_PTSZ, F_CU_MEMCPY, F_CU_MEMCPY_ASYNC, F_CU_HTOD, F_CU_DTOH,
       F_CU_DTOD, F_CU_HTOD_ASYNC, F_CU_DTOH_ASYNC, F_CU_CTX_SYNC, F_CU_STREAM_SYNC, F_CU_ALLOC, F_CU_FREE,
       F_ALLREDUCE, F_ALLGATHER, F_REDUCE_SCATTER, F_BROADCAST, F_SEND, F_RECV, F_N };
static const char *names[F_N] = {
	"cudaLaunchKernel", "cudaLaunchKernel_ptsz", "cudaGraphLaunch", "cudaMemcpy", "cudaMemcpyAsync",
	"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMalloc", "cudaFree",
	"cuLaunchKernel", "cuLaunchKernel_ptsz", "cuMemcpy", "cuMemcpyAsync", "cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2",
	"cuMemcpyDtoD_v2", "cuMemcpyHtoDAsync_v2", "cuMemcpyDtoHAsync_v2", "cuCtxSynchronize",
	"cuStreamSynchronize", "cuMemAlloc_v2", "cuMemFree_v2", "ncclAllReduce", "ncclAllGather",
	"ncclReduceScatter", "ncclBroadcast", "ncclSend", "ncclRecv",
};
static unsigned long calls[F_N];
static int failures;
#define CALL(f, expr) do { calls[f]++; if ((expr) != 0) failures++; } while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static char host[1 << 20];

/* What nvcc generates for each __global__ function: a host stub whose address the program passes
 * to cudaLaunchKernel. The collector names launches after these symbols. */
__attribute__((noinline, used)) void add_vectors_kernel(void) { __asm__ volatile(""); }
__attribute__((noinline, used)) void fused_softmax_kernel(void) { __asm__ volatile("nop"); }

static void every_other_function(cudaStream_t s, void **args)
{
	void *p = NULL;
	CUdeviceptr d = 0;
	dim3 g = { 4, 2, 1 }, b = { 64, 1, 1 };
	CALL(F_MALLOC, cudaMalloc(&p, 1 << 20));
	CALL(F_MEMCPY, cudaMemcpy(p, host, 1 << 20, 1));
	CALL(F_FREE, cudaFree(p));
	CALL(F_LAUNCH_PTSZ, cudaLaunchKernel_ptsz((void *)fused_softmax_kernel, g, b, args, 0, s));
	CALL(F_GRAPH, cudaGraphLaunch((void *)0x1, s));
	CALL(F_DEVICE_SYNC, cudaDeviceSynchronize());
	CALL(F_EVENT_SYNC, cudaEventSynchronize((void *)0x2));
	CALL(F_CU_ALLOC, cuMemAlloc_v2(&d, 8192));
	CALL(F_CU_HTOD, cuMemcpyHtoD_v2(d, host, 8192));
	CALL(F_CU_DTOH, cuMemcpyDtoH_v2(host, d, 8192));
	CALL(F_CU_DTOD, cuMemcpyDtoD_v2(d, d, 4096));
	CALL(F_CU_MEMCPY, cuMemcpy(d, d, 4096));
	CALL(F_CU_MEMCPY_ASYNC, cuMemcpyAsync(d, d, 4096, (CUstream)s));
	CALL(F_CU_HTOD_ASYNC, cuMemcpyHtoDAsync_v2(d, host, 4096, (CUstream)s));
	CALL(F_CU_DTOH_ASYNC, cuMemcpyDtoHAsync_v2(host, d, 4096, (CUstream)s));
	CALL(F_CU_LAUNCH_PTSZ, cuLaunchKernel_ptsz((CUfunction)0x3, 8, 1, 1, 32, 1, 1, 0, (CUstream)s, args, NULL));
	CALL(F_CU_STREAM_SYNC, cuStreamSynchronize((CUstream)s));
	CALL(F_CU_FREE, cuMemFree_v2(d));
	CALL(F_ALLREDUCE, ncclAllReduce(host, host, 1024, 7, 0, NULL, s));
	CALL(F_ALLGATHER, ncclAllGather(host, host, 512, 4, NULL, s));
	CALL(F_REDUCE_SCATTER, ncclReduceScatter(host, host, 256, 9, 0, NULL, s));
	CALL(F_BROADCAST, ncclBroadcast(host, host, 2048, 0, 0, NULL, s));
	CALL(F_SEND, ncclSend(host, 128, 8, 1, NULL, s));
	CALL(F_RECV, ncclRecv(host, 128, 8, 1, NULL, s));
	CALL(F_CU_CTX_SYNC, cuCtxSynchronize());
}

int main(int argc, char **argv)
{
	long iterations = 100, launches = 50, gpu_us = 20, bench = 0;
	int wait_stdin = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atol(argv[++i]);
		else if (!strcmp(argv[i], "--launches") && i + 1 < argc) launches = atol(argv[++i]);
		else if (!strcmp(argv[i], "--gpu-us") && i + 1 < argc) gpu_us = atol(argv[++i]);
		else if (!strcmp(argv[i], "--bench") && i + 1 < argc) bench = atol(argv[++i]);
		else if (!strcmp(argv[i], "--wait-stdin")) wait_stdin = 1;
		else {
			fprintf(stderr, "cw-cuda-workload: unknown argument %s (see the comment at the top of workload.c)\n", argv[i]);
			return 2;
		}
	}
	cudaStream_t s = (cudaStream_t)0x5000;
	uint64_t kernel_ns = (uint64_t)gpu_us * 1000, zero = 0;
	void *args[1] = { &kernel_ns }, *no_work[1] = { &zero };
	dim3 grid = { 128, 1, 1 }, block = { 256, 1, 1 };
	if (bench) {
		uint64_t t0 = now_ns();
		for (long i = 0; i < bench; i++)
			CALL(F_LAUNCH, cudaLaunchKernel((void *)add_vectors_kernel, grid, block, no_work, 0, s));
		uint64_t t1 = now_ns();
		printf("{\"launches\": %ld, \"ns_per_launch\": %.1f, \"failures\": %d}\n", bench,
		       (double)(t1 - t0) / (double)bench, failures);
		return failures != 0;
	}
	printf("{\"ready\": %d}\n", getpid());
	fflush(stdout);
	if (wait_stdin) {
		char line[64];
		if (!fgets(line, sizeof(line), stdin))
			return 1;
	}
	uint64_t t0 = now_ns();
	for (long it = 0; it < iterations; it++) {
		CALL(F_MEMCPY_ASYNC, cudaMemcpyAsync(host, host, 65536, 1, s));
		for (long l = 0; l < launches; l++)
			CALL(F_LAUNCH, cudaLaunchKernel((void *)add_vectors_kernel, grid, block, args, 0, s));
		CALL(F_CU_LAUNCH, cuLaunchKernel((CUfunction)0x4, 16, 2, 1, 128, 1, 1, 0, (CUstream)s, args, NULL));
		CALL(F_STREAM_SYNC, cudaStreamSynchronize(s));
		if (it % 10 == 0)
			every_other_function(s, args);
	}
	uint64_t t1 = now_ns();
	printf("{\"pid\": %d, \"tid\": %ld, \"elapsed_ns\": %llu, \"failures\": %d, \"calls\": {", getpid(),
	       (long)syscall(SYS_gettid), (unsigned long long)(t1 - t0), failures);
	for (int f = 0; f < F_N; f++)
		printf("%s\"%s\": %lu", f ? ", " : "", names[f], calls[f]);
	printf("}}\n");
	return failures != 0;
}
