/* SPDX-License-Identifier: Apache-2.0 */
/*
 * causeway thread-context writer: publishes the calling thread's current span so the kernel
 * events of that thread can be tagged with it.
 *
 * The record follows OTEP-4947 (OpenTelemetry thread context): a TLS pointer
 * `otel_thread_ctx_v1`, exported in .dynsym, points to a packed record
 * {trace_id[16], span_id[8], valid, trace_flags, attrs_data_size}. Every change ends in one call
 * of causeway_ctx_publish(), the function causeway-collector uprobes: it receives the new context
 * in registers, so the probe never reads user memory.
 *
 * Usage (C):   uint32_t tok = causeway_ctx_attach(trace_id, span_id, 1);
 *              ... work of that span ...
 *              causeway_ctx_detach(tok);
 * Thread-safe by construction: all state is thread-local.
 */
#ifndef CAUSEWAY_CTX_H
#define CAUSEWAY_CTX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* OTEP-4947 thread-context record (version 1). */
struct otel_thread_ctx_v1 {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t valid;
	uint8_t trace_flags;
	uint16_t attrs_data_size;
} __attribute__((packed));

/* Nesting depth kept per thread; deeper attaches replace the innermost entry. */
#define CAUSEWAY_CTX_MAX_DEPTH 64

/* Makes (trace_id, span_id) the thread's current span, remembering the previous one.
 * Returns a token for causeway_ctx_detach(). */
uint32_t causeway_ctx_attach(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t trace_flags);

/* Restores the span that was current before the attach that returned `token`. */
void causeway_ctx_detach(uint32_t token);

/* Replaces the current span without nesting (for runtimes that track nesting themselves, such
 * as the OpenTelemetry Python context). */
void causeway_ctx_set(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t trace_flags);

/* causeway_ctx_set with the ids as integers: trace id as big-endian halves, span id. For
 * language bindings where building byte strings costs more than the call (Python ctypes). */
void causeway_ctx_set_ids(uint64_t trace_hi, uint64_t trace_lo, uint64_t span, uint8_t trace_flags);

/* The thread has no current span. */
void causeway_ctx_clear(void);

/* Copies the current span; returns 1 when there is one, 0 otherwise. */
int causeway_ctx_current(uint8_t trace_id[16], uint8_t span_id[8]);

/* The probe point. Called after every change with the new context: trace id as two big-endian
 * halves, span id big-endian, and `flags` = trace_flags | 0x100 when valid (0 when cleared).
 * Does nothing by itself. */
void causeway_ctx_publish(uint64_t trace_hi, uint64_t trace_lo, uint64_t span, uint64_t flags);

/* Library version: 1. */
uint32_t causeway_ctx_version(void);

#ifdef __cplusplus
}
#endif

#endif /* CAUSEWAY_CTX_H */
