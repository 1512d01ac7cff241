/* libnccl.so.2 stand-in: collectives enqueue device work on the stream and return. */
#include "fake_gpu.h"

static size_t elem(ncclDataType_t t)
{
	switch (t) {
	case 2: case 3: case 7: return 4;
	case 4: case 5: case 8: return 8;
	case 6: case 9: return 2;
	default: return 1;
	}
}

static ncclResult_t enqueue(size_t count, ncclDataType_t t, cudaStream_t s)
{
	fakegpu_host_overhead();
	fakegpu_enqueue(fakegpu_copy_ns(count * elem(t)) * 2, s);
	return 0;
}

FAKE_API ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
				    ncclComm_t comm, cudaStream_t s)
{ (void)send; (void)recv; (void)op; (void)comm; return enqueue(count, t, s); }
FAKE_API ncclResult_t ncclAllGather(const void *send, void *recv, size_t count, ncclDataType_t t, ncclComm_t comm,
				    cudaStream_t s)
{ (void)send; (void)recv; (void)comm; return enqueue(count, t, s); }
FAKE_API ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t count, ncclDataType_t t,
					ncclRedOp_t op, ncclComm_t comm, cudaStream_t s)
{ (void)send; (void)recv; (void)op; (void)comm; return enqueue(count, t, s); }
FAKE_API ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root,
				    ncclComm_t comm, cudaStream_t s)
{ (void)send; (void)recv; (void)root; (void)comm; return enqueue(count, t, s); }
FAKE_API ncclResult_t ncclSend(const void *send, size_t count, ncclDataType_t t, int peer, ncclComm_t comm,
			       cudaStream_t s)
{ (void)send; (void)peer; (void)comm; return enqueue(count, t, s); }
FAKE_API ncclResult_t ncclRecv(void *recv, size_t count, ncclDataType_t t, int peer, ncclComm_t comm,
			       cudaStream_t s)
{ (void)recv; (void)peer; (void)comm; return enqueue(count, t, s); }
