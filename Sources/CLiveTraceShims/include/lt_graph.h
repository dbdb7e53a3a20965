/* lt_graph.h — the function graph: entry AND exit events by return hooking
 * with a per-thread shadow stack (docs/ARCHITECTURE.md, "Function graph").
 *
 * Entry (lt_graph_entry_callback, an ops callback called by lt_tramp_entry):
 *   1. pop the frames this thread left without returning (longjmp,
 *      siglongjmp, exceptions): a frame whose return slot lies below the new
 *      call's slot is dead; its exit is recorded flagged UNWOUND;
 *   2. push {slot, original return address, function} on the shadow stack;
 *   3. record the entry at depth = the frame's index (unless deeper than the
 *      depth limit: then the frame is hooked but not recorded, so the depth
 *      of everything under it stays right);
 *   4. overwrite the return slot with lt_graph_return_trampoline.
 *
 *   the traced function's stack, before and after step 4:
 *       slot:  [caller's return address]   ->  [lt_graph_return_trampoline]
 *
 * Exit (lt_graph_return_trampoline, lt_return_x86_64.S, reached by the
 * function's `ret`): saves every return register of the C and Swift
 * conventions, calls lt_graph_exit(slot), which finds the frame by its slot,
 * pops it (and any dead frame above it, flagged UNWOUND), writes the original
 * return address back into the slot, records the exit; the trampoline then
 * restores the registers and returns to the original address.
 *
 * The shadow stack is fixed-size (LT_GRAPH_STACK_CAPACITY frames), mmapped on
 * a thread's first traced call (raw system call: no malloc, async-signal-
 * safe) and reached through an initial-exec TLS pointer. A call beyond the
 * capacity is not hooked and not recorded: it is counted (overflow).
 *
 * Signal safety: a signal handler on the same thread may push and pop at any
 * instruction of the push/pop below. A frame is published in three steps
 * (state FREE, count+1, fields, state HOOKED) and retired by copy, state
 * FREE, count-1; every reader skips FREE frames. Only compiler ordering
 * matters (same thread): signal fences.
 *
 * The exit path and the unwinders' paths run inside the thread's callback
 * section (odd lt_thread_slot.seq, lt_tramp.h), as the entry callback does:
 * a traced call from a signal handler that interrupts the tracer itself is
 * skipped by the trampolines' recursion guard and counted
 * (lt_skipped_calls), never recorded at a depth the stream contradicts.
 *
 * Unwinders (lt_unwind.c): before a C++ exception or pthread_exit unwinds,
 * every hooked slot of the thread gets its original return address back
 * (state RESTORED), so the unwinder sees the real stack; at the catch the
 * dead frames are popped (UNWOUND) and the survivors hooked again.
 */
#ifndef LT_GRAPH_H
#define LT_GRAPH_H
#include <stdint.h>
#include "livetrace.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Frames per thread. The depth limit (-D) is at most this. */
#define LT_GRAPH_STACK_CAPACITY 4096u
/* Dead frames remembered per thread after an UNWOUND pop, in case one of
 * them was alive after all (a stack this runtime cannot see switching). */
#define LT_GRAPH_GRAVEYARD 16u

/* Counters over all threads since the process started (relaxed). */
struct lt_graph_stats {
    uint64_t overflow;      /* calls not hooked nor recorded: shadow stack full */
    uint64_t unwound;       /* exits recorded flagged UNWOUND (longjmp, exceptions, pthread_exit) */
    uint64_t restored;      /* hooked slots restored before an unwinder ran */
    uint64_t rehooked;      /* restored slots hooked again at a catch */
    uint64_t recovered;     /* returns through a frame popped as dead earlier (graveyard) */
    uint64_t no_stack;      /* calls not hooked: the shadow stack could not be mapped */
    uint64_t stacks;        /* shadow stacks mapped (threads) */
};

/* The ops callback of the function graph (register it as any ops). */
void lt_graph_entry_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs);

/* The ops callback of the graph's entry-only functions (Swift async
 * functions and continuations, which leave by tail calls, not through their
 * return address): step 1 as above, then an entry flagged ENTRY_ONLY at the
 * depth of the top frame + 1 (within the depth limit); no frame pushed, the
 * return slot never written. */
void lt_graph_entry_only_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs);
/* Called by the return trampoline only: `slot` is the address of the return
 * address slot the function returned through. Returns the original return
 * address. */
__attribute__((visibility("hidden"))) uintptr_t lt_graph_exit(uintptr_t slot);
/* The return trampoline (never call it). */
void lt_graph_return_trampoline(void);
uintptr_t lt_graph_return_trampoline_address(void);

/* Makes the code holding the return trampoline permanent (RTLD_NODELETE):
 * call once before the first hook, outside signal handlers. 0 or -1. */
int lt_graph_pin_code(void);

/* The depth limit: frames at depth >= limit are hooked but not recorded.
 * 0 or > LT_GRAPH_STACK_CAPACITY mean LT_GRAPH_STACK_CAPACITY. */
void lt_graph_set_max_depth(uint32_t limit);
uint32_t lt_graph_max_depth(void);

void lt_graph_get_stats(struct lt_graph_stats *stats);
/* The calling thread's shadow-stack depth (frames, live or not yet popped). */
uint32_t lt_graph_thread_depth(void);

/* Before an unwinder walks this thread's stack: every hooked slot gets its
 * original return address back (frames become RESTORED). */
void lt_graph_restore_thread(void);
/* After an unwinder stopped at the frame whose stack pointer is `sp`: frames
 * whose slot is below `sp` are popped, their exits recorded UNWOUND; the
 * others are hooked again. */
void lt_graph_resume_thread(uintptr_t sp);
/* For a stack walk that leaves every frame alive (backtrace): restores as
 * lt_graph_restore_thread does, unless the thread is inside the tracer
 * itself (a signal handler interrupted it: its shadow stack may be mid-push)
 * or an unwinder already restored frames — then nothing is restored and 0
 * is returned. 1: restored; call
 * lt_graph_resume_thread(0) after the walk. */
int lt_graph_restore_thread_for_walk(void);
/* Pops every frame of the thread, recording UNWOUND exits (pthread_exit),
 * after restoring their slots. */
void lt_graph_unwind_thread(void);

/* The C entry point for the LD_PRELOAD shim and `livetrace record`
 * (implemented in Swift, FunctionGraph.swift): starts recording the function
 * graph of the functions matching the NULL-terminated glob lists `filters`
 * (NULL or empty: every function with a site) minus `notrace`, with depth
 * limit `max_depth` (0: LT_GRAPH_STACK_CAPACITY). Events go to the active
 * recording (lt_record_attach*). `min_time_ns` must be 0 for now
 * (-LT_EINVAL otherwise: filtering short calls needs an entry writer that
 * takes a timestamp). Returns 0 or a negative LT_E* code. */
int lt_graph_start(const char *const *filters, const char *const *notrace, uint32_t max_depth,
                   uint64_t min_time_ns);
/* Unpatches the functions; frames still hooked keep returning through the
 * (permanent) return trampoline and record their exits. */
int lt_graph_stop(void);

#ifdef __cplusplus
}
#endif
#endif
