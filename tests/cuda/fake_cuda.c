/* libcuda.so.1 stand-in: the driver API names and signatures the collector probes, and the fake
 * device (see fake_gpu.h). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fake_gpu.h"

#define QUEUE 4096
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static uint64_t queue[QUEUE];
static unsigned head, tail, running;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint64_t launch_ns = 4000;

static void *device(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "fake-gpu");
	/* a real GPU does not share the host's CPU: FAKECUDA_DEVICE_CPU keeps the device off it */
	const char *cpu = getenv("FAKECUDA_DEVICE_CPU");
	if (cpu) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(atoi(cpu), &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	pthread_mutex_lock(&mu);
	for (;;) {
		/* poll for work like a driver's event thread (a timer wakes it, not the host thread):
		 * an idle device is not a lock the host holds */
		while (head == tail) {
			pthread_mutex_unlock(&mu);
			struct timespec poll = { 0, 50000 };
			nanosleep(&poll, NULL);
			pthread_mutex_lock(&mu);
		}
		uint64_t ns = queue[head % QUEUE];
		running = 1;
		pthread_mutex_unlock(&mu);
		struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
		if (ns)
			nanosleep(&ts, NULL);
		pthread_mutex_lock(&mu);
		head++;
		running = 0;
		if (head == tail)
			pthread_cond_broadcast(&idle);
	}
	return NULL;
}

static void start(void)
{
	const char *e = getenv("FAKECUDA_LAUNCH_NS");
	if (e)
		launch_ns = strtoull(e, NULL, 10);
	pthread_t t;
	pthread_create(&t, NULL, device, NULL);
	pthread_detach(t);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

FAKE_API void fakegpu_host_overhead(void)
{
	pthread_once(&once, start);
	uint64_t end = now_ns() + launch_ns;
	while (now_ns() < end)
		;
}

FAKE_API void fakegpu_enqueue(uint64_t gpu_ns, const void *stream)
{
	(void)stream;
	if (!gpu_ns)
		return; /* nothing for the device to do: no queueing, no wakeup */
	pthread_once(&once, start);
	pthread_mutex_lock(&mu);
	while (tail - head >= QUEUE) /* a full queue blocks the host, as a real one does */
		pthread_cond_wait(&idle, &mu);
	queue[tail % QUEUE] = gpu_ns;
	tail++;
	pthread_mutex_unlock(&mu);
}

FAKE_API void fakegpu_wait_idle(void)
{
	pthread_once(&once, start);
	pthread_mutex_lock(&mu);
	while (head != tail)
		pthread_cond_wait(&idle, &mu);
	pthread_mutex_unlock(&mu);
}

FAKE_API uint64_t fakegpu_copy_ns(size_t bytes)
{
	return bytes / 10 + 1000;
}

static uint64_t kernel_ns(void **params)
{
	return params && params[0] ? *(const uint64_t *)params[0] : 1000;
}

FAKE_API CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
				 unsigned bz, unsigned shmem, CUstream stream, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem; (void)extra;
	fakegpu_host_overhead();
	fakegpu_enqueue(kernel_ns(params), stream);
	return 0;
}

FAKE_API CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
				      unsigned bz, unsigned shmem, CUstream stream, void **params, void **extra)
{
	(void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)shmem; (void)extra;
	fakegpu_host_overhead();
	fakegpu_enqueue(kernel_ns(params) + 1, stream);
	return 0;
}

static CUresult copy_sync(size_t n)
{
	fakegpu_enqueue(fakegpu_copy_ns(n), NULL);
	fakegpu_wait_idle();
	return 0;
}

FAKE_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) { (void)dst; (void)src; return copy_sync(n); }
FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) { (void)dst; (void)src; return copy_sync(n + 1); }
FAKE_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) { (void)dst; (void)src; return copy_sync(n + 2); }
FAKE_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { (void)dst; (void)src; return copy_sync(n + 3); }
FAKE_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
	(void)dst; (void)src;
	fakegpu_enqueue(fakegpu_copy_ns(n), s);
	return 0;
}
FAKE_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
	(void)dst; (void)src;
	fakegpu_enqueue(fakegpu_copy_ns(n) + 1, s);
	return 0;
}
FAKE_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
	(void)dst; (void)src;
	fakegpu_enqueue(fakegpu_copy_ns(n) + 2, s);
	return 0;
}
FAKE_API CUresult cuCtxSynchronize(void) { fakegpu_wait_idle(); return 0; }
FAKE_API CUresult cuStreamSynchronize(CUstream s) { (void)s; fakegpu_wait_idle(); return 1 - 1; }
FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
	void *m = calloc(1, n ? n : 1);
	*p = (CUdeviceptr)(uintptr_t)m;
	return m ? 0 : 2; /* CUDA_ERROR_OUT_OF_MEMORY */
}
FAKE_API CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return 0; }
