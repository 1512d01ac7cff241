/* SPDX-License-Identifier: Apache-2.0 */
/* causeway thread-context writer; see causeway_ctx.h. */
#include <string.h>

#include "causeway_ctx.h"

#define EXPORT __attribute__((visibility("default")))

/* OTEP-4947: readers find the record through this TLS pointer (NULL: no context). */
EXPORT __thread struct otel_thread_ctx_v1 *otel_thread_ctx_v1;

static __thread struct otel_thread_ctx_v1 stack[CAUSEWAY_CTX_MAX_DEPTH];
static __thread uint32_t depth;

static uint64_t load_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The probe point. Its first instruction is `push %rbp` on x86-64: the kernel emulates that
 * instruction when the uprobe fires, where `endbr64` or most others must be single-stepped (about
 * 4x the cost of the trap). noinline + used: it must exist and be called on every change. */
#if defined(__x86_64__)
EXPORT __attribute__((naked, noinline, used)) void
causeway_ctx_publish(__attribute__((unused)) uint64_t trace_hi, __attribute__((unused)) uint64_t trace_lo,
		     __attribute__((unused)) uint64_t span, __attribute__((unused)) uint64_t flags)
{
	__asm__ volatile("push %rbp\n\tmov %rsp, %rbp\n\tpop %rbp\n\tret\n");
}
#else
EXPORT __attribute__((noinline, used)) void
causeway_ctx_publish(uint64_t trace_hi, uint64_t trace_lo, uint64_t span, uint64_t flags)
{
	__asm__ volatile("" : : "r"(trace_hi), "r"(trace_lo), "r"(span), "r"(flags) : "memory");
}
#endif

static void publish(void)
{
	struct otel_thread_ctx_v1 *r;

	if (depth == 0 || !stack[depth - 1].valid) {
		otel_thread_ctx_v1 = NULL;
		causeway_ctx_publish(0, 0, 0, 0);
		return;
	}
	r = &stack[depth - 1];
	otel_thread_ctx_v1 = r;
	causeway_ctx_publish(load_be64(r->trace_id), load_be64(r->trace_id + 8), load_be64(r->span_id),
			     0x100u | r->trace_flags);
}

static void fill(struct otel_thread_ctx_v1 *r, const uint8_t *trace_id, const uint8_t *span_id,
		 uint8_t trace_flags)
{
	memcpy(r->trace_id, trace_id, 16);
	memcpy(r->span_id, span_id, 8);
	r->trace_flags = trace_flags;
	r->attrs_data_size = 0;
	/* an all-zero id is invalid in OpenTelemetry */
	r->valid = load_be64(trace_id) || load_be64(trace_id + 8) ? load_be64(span_id) != 0 : 0;
}

EXPORT uint32_t causeway_ctx_attach(const uint8_t trace_id[16], const uint8_t span_id[8],
				    uint8_t trace_flags)
{
	if (depth < CAUSEWAY_CTX_MAX_DEPTH)
		depth++;
	fill(&stack[depth - 1], trace_id, span_id, trace_flags);
	publish();
	return depth;
}

EXPORT void causeway_ctx_detach(uint32_t token)
{
	if (token == 0 || token > depth + 1)
		return; /* not ours, or already detached */
	depth = token - 1;
	publish();
}

EXPORT void causeway_ctx_set(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t trace_flags)
{
	if (depth == 0)
		depth = 1;
	fill(&stack[depth - 1], trace_id, span_id, trace_flags);
	publish();
}

static void store_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

EXPORT void causeway_ctx_set_ids(uint64_t trace_hi, uint64_t trace_lo, uint64_t span, uint8_t trace_flags)
{
	uint8_t t[16], s[8];

	store_be64(t, trace_hi);
	store_be64(t + 8, trace_lo);
	store_be64(s, span);
	causeway_ctx_set(t, s, trace_flags);
}

EXPORT void causeway_ctx_clear(void)
{
	depth = 0;
	publish();
}

EXPORT int causeway_ctx_current(uint8_t trace_id[16], uint8_t span_id[8])
{
	if (depth == 0 || !stack[depth - 1].valid)
		return 0;
	memcpy(trace_id, stack[depth - 1].trace_id, 16);
	memcpy(span_id, stack[depth - 1].span_id, 8);
	return 1;
}

EXPORT uint32_t causeway_ctx_version(void)
{
	return 1;
}
