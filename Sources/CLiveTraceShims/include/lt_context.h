#ifndef LT_CONTEXT_H
#define LT_CONTEXT_H
/* Execution contexts of a thread: its normal flow, and each signal handler
 * nested in it (the kernel's recursion contexts: normal, softirq, irq, NMI).
 *
 * Rule: tracer code (a trampoline between E1 and E2, a callback, the
 * iterator, the function graph, the recorder) is re-entered only by a
 * traced call from the same context, and that is recursion: skipped and
 * counted. A signal handler that interrupts tracer code (the interrupted
 * context's seq is odd) runs in the next context, which has resources of
 * its own, so its calls are delivered and recorded like any other and
 * nothing the interrupted code was doing can be torn:
 *
 *   per context   thread slot (seq: E1/E2 and the recursion guard, skipped)
 *                 shadow stack of the function graph
 *                 writer state: its own ring in the ring area (one stream)
 *
 * A handler that interrupts the program's own code (seq even: no shadow
 * stack or ring change is under way, they all happen inside sections)
 * stays in the interrupted context: its calls nest in the same stream
 * under the frame they interrupted, as they would in the program's own
 * call tree. So a thread's calls are in one stream, except those of
 * handlers that interrupted tracer code: they are in the stream of the
 * context they ran in, with depths counted from 0 there.
 *
 * The hot paths reach these through the thread-local pointers they always
 * used (lt_thread_self, lt_graph_self, lt_thread): those hold the *current*
 * context's resources. The frames below are the authority; the pointers are
 * a copy of the current frame, rewritten on every switch.
 *
 * Switching (lt_context_enter / lt_context_leave, around a program's
 * signal handler: lt_sigmask.c's dispatcher and lt_trap.c's forwarding):
 *   enter: level = L + 1, then copy frames[L + 1] into the pointers;
 *   leave: level = L - 1, then copy frames[L - 1] into the pointers.
 * A signal nested anywhere in these steps switches and returns with the
 * level it found and the pointers copied from that level's frame; the
 * interrupted copy then finishes with the same values. A slow path that
 * creates a resource (slot claim, shadow stack, ring claim) stores it in
 * the current frame first and in the pointer second, for the same reason.
 *
 * Depth: LT_CONTEXT_LEVELS contexts (the normal flow and three nested
 * handlers). A handler nested deeper shares the deepest context: its calls
 * that interrupt tracer code there are skipped and counted, as recursion.
 *
 * A handler left by longjmp/siglongjmp leaves the level where it was: the
 * normal flow then runs on the handler's context (its calls are still
 * recorded, in that context's stream). When a function entered in a lower
 * context returns, the function graph finds its frame there, records the
 * abandoned contexts' frames as unwound and switches back
 * (lt_graph_exit). */
#include <stdint.h>
#include "lt_record.h"
#include "lt_tramp.h"

#define LT_CONTEXT_LEVELS 4

struct lt_graph_stack;

/* One context's resources; NULL until its first traced call needs them. */
struct lt_context_frame {
    struct lt_thread_slot *slot;
    struct lt_graph_stack *graph;
    struct lt_thread_state writer;
};

struct lt_context_state {
    uint32_t level;   /* the current context: 0 normal flow, k the k-th nested handler */
    uint32_t shared;  /* handlers running beyond the deepest context, sharing it */
    struct lt_context_frame frames[LT_CONTEXT_LEVELS];
};

/* Written only by its own thread (and its signal handlers, which restore
 * what they change before returning). */
extern __thread struct lt_context_state lt_contexts
    __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern __thread struct lt_graph_stack *lt_graph_self
    __attribute__((tls_model("initial-exec"), visibility("hidden")));

#define lt_context_fence() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static inline struct lt_context_frame *lt_context_current(void) {
    return &lt_contexts.frames[__atomic_load_n(&lt_contexts.level, __ATOMIC_RELAXED)];
}

/* The setters of the slow paths: the frame first, then the pointer. */
static inline void lt_context_set_slot(struct lt_thread_slot *slot) {
    lt_context_current()->slot = slot;
    lt_context_fence();
    lt_thread_self = slot;
}
static inline void lt_context_set_graph(struct lt_graph_stack *stack) {
    lt_context_current()->graph = stack;
    lt_context_fence();
    lt_graph_self = stack;
}
static inline void lt_context_set_writer(struct lt_area_header *area, struct lt_ring_header *ring,
                                         uint32_t exiting) {
    struct lt_context_frame *frame = lt_context_current();
    frame->writer.area = area;
    frame->writer.ring = ring;
    frame->writer.exiting = exiting;
    lt_context_fence();
    lt_thread.area = area;
    lt_thread.ring = ring;
    lt_thread.exiting = exiting;
}

/* Enters the next context before a program's signal handler runs, when
 * the handler interrupted tracer code; returns the token lt_context_leave
 * takes after it returned: 0 (the handler stays in the interrupted
 * context), the level entered (leaving returns to the one below it)... */
#define LT_CONTEXT_SHARED 0xffffffffu /* ...or this: it shares the deepest context */
uint32_t lt_context_enter(void);
void lt_context_leave(uint32_t token);

/* Makes `level` current (thread exit, fork, the graph's repair after a
 * longjmp out of a handler). */
void lt_context_install(uint32_t level);

/* 1 when any context of the calling thread is inside tracer code (its
 * slot's seq is odd): registry changes refuse to run there. */
int lt_context_inside_any_section(void);

/* Handlers entered and handlers that shared the deepest context, since
 * start (statistics for tests). */
uint64_t lt_context_switches(void);
uint64_t lt_context_shared_entries(void);

#endif
