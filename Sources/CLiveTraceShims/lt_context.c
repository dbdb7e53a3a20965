/* Execution contexts of a thread (protocol in include/lt_context.h).
 * Everything here is async-signal-safe: plain stores to the thread's own
 * initial-exec TLS, no call, no lock. */
#define _GNU_SOURCE
#include "lt_context.h"

__thread struct lt_context_state lt_contexts __attribute__((tls_model("initial-exec")));
/* The current context's pointers that the hot paths read (lt_context.h).
 * Defined here, beside the frames they copy, so that the writer layer
 * (lt_record.c) links with this file alone in the tests' small programs. */
__thread struct lt_thread_slot *lt_thread_self __attribute__((tls_model("initial-exec")));
__thread struct lt_graph_stack *lt_graph_self __attribute__((tls_model("initial-exec")));

static uint64_t lt_context_switch_count, lt_context_shared_count;

static inline void lt_context_copy_to_pointers(const struct lt_context_frame *frame) {
    lt_thread_self = frame->slot;
    lt_graph_self = frame->graph;
    lt_thread.area = frame->writer.area;
    lt_thread.ring = frame->writer.ring;
    lt_thread.ignored = frame->writer.ignored;
    lt_thread.exiting = frame->writer.exiting;
}

/* Also marks each context's slot active (the current context and those
 * suspended under it) or not (the contexts of handlers that returned): the
 * reclaimer's rule (f) (Quiescence.swift). A context is left only after
 * its handler's last E2, so an inactive slot is never inside a section. */
void lt_context_install(uint32_t level) {
    if (level >= LT_CONTEXT_LEVELS) return;
    __atomic_store_n(&lt_contexts.level, level, __ATOMIC_RELAXED);
    lt_context_fence();
    lt_context_copy_to_pointers(&lt_contexts.frames[level]);
    lt_context_fence();
    for (uint32_t k = 0; k < LT_CONTEXT_LEVELS; k++) {
        struct lt_thread_slot *slot = lt_contexts.frames[k].slot;
        if (slot != NULL) __atomic_store_n(&slot->active, k <= level, __ATOMIC_RELEASE);
    }
}

uint32_t lt_context_enter(void) {
    uint32_t level = __atomic_load_n(&lt_contexts.level, __ATOMIC_RELAXED);
    struct lt_thread_slot *slot = lt_contexts.frames[level].slot;
    /* Outside tracer code the interrupted context's shadow stack and ring
     * are consistent (every change to them happens inside a section): the
     * handler's calls nest there, under the frame they interrupted. */
    if (slot == NULL || !(__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) & 1)) return 0;
    if (level + 1 >= LT_CONTEXT_LEVELS) {
        lt_contexts.shared += 1;
        __atomic_fetch_add(&lt_context_shared_count, 1, __ATOMIC_RELAXED);
        return LT_CONTEXT_SHARED;
    }
    /* The tracer's own thread (the drain) stays ignored in every context. */
    lt_contexts.frames[level + 1].writer.ignored = lt_contexts.frames[level].writer.ignored;
    lt_context_install(level + 1);
    __atomic_fetch_add(&lt_context_switch_count, 1, __ATOMIC_RELAXED);
    return level + 1;
}

void lt_context_leave(uint32_t token) {
    if (token == LT_CONTEXT_SHARED) {
        lt_contexts.shared -= 1;
        return;
    }
    if (token != 0) lt_context_install(token - 1);
}

int lt_context_inside_any_section(void) {
    for (uint32_t k = 0; k < LT_CONTEXT_LEVELS; k++) {
        struct lt_thread_slot *slot = lt_contexts.frames[k].slot;
        if (slot != NULL && (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) & 1)) return 1;
    }
    return 0;
}

uint64_t lt_context_switches(void) { return __atomic_load_n(&lt_context_switch_count, __ATOMIC_RELAXED); }
uint64_t lt_context_shared_entries(void) { return __atomic_load_n(&lt_context_shared_count, __ATOMIC_RELAXED); }
