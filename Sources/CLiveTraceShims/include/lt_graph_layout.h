/* lt_graph_layout.h — the byte offsets the function graph's assembly fast
 * paths (lt_tramp_x86_64.S: lt_tramp_entry_graph; lt_return_x86_64.S: the
 * return trampoline) use to reach the C structures they share with
 * lt_graph.c, lt_tramp.c and lt_record.c, and (for the assembler only) the
 * steps both paths share. Macros only, so that the assembler can include
 * it; lt_graph.c checks every offset against the C layout with
 * _Static_assert (a change of a structure that forgets this file does not
 * compile).
 */
#ifndef LT_GRAPH_LAYOUT_H
#define LT_GRAPH_LAYOUT_H

/* struct lt_thread_slot (lt_tramp.h): LT_LAYOUT_SLOT_*. */
#include "lt_tramp_layout.h"

/* struct lt_graph_stack and struct lt_graph_frame (lt_graph.c). */
#define LT_LAYOUT_STACK_COUNT 0
#define LT_LAYOUT_STACK_FRAMES 520
#define LT_LAYOUT_STACK_CAPACITY 4096 /* LT_GRAPH_STACK_CAPACITY */
#define LT_LAYOUT_FRAME_SHIFT 5       /* 32-byte frames */
#define LT_LAYOUT_FRAME_SIZE 32
#define LT_LAYOUT_FRAME_SLOT 0
#define LT_LAYOUT_FRAME_RETURN 8
#define LT_LAYOUT_FRAME_FUNCTION 16
#define LT_LAYOUT_FRAME_STATE 24
#define LT_LAYOUT_FRAME_FREE 0
#define LT_LAYOUT_FRAME_HOOKED 1
#define LT_LAYOUT_FRAME_STATE_MASK 3
#define LT_LAYOUT_FRAME_SILENT 4

/* struct lt_thread_state (lt_record.h): the writer's thread-local state. */
#define LT_LAYOUT_WRITER_AREA 0
#define LT_LAYOUT_WRITER_RING 8

/* struct lt_area_header and struct lt_ring_header (lt_ring.h). */
#define LT_LAYOUT_AREA_RING_CAPACITY 20
#define LT_LAYOUT_RING_HEAD 64
#define LT_LAYOUT_RING_LOST_TOTAL 72
#define LT_LAYOUT_RING_LOST_EMITTED 80
#define LT_LAYOUT_RING_LIMIT 88
#define LT_LAYOUT_RING_BUSY 104
#define LT_LAYOUT_RING_EVENTS 256  /* LT_RING_HEADER_SIZE: the events follow the header */
#define LT_LAYOUT_EVENT_SHIFT 4    /* 16-byte events */
#define LT_LAYOUT_EVENT_TIMESTAMP 0
#define LT_LAYOUT_EVENT_WORD 8

/* The event word (lt_ring.h): address | depth << 48 | kind << 62. */
#define LT_LAYOUT_EVENT_DEPTH_SHIFT 48
#define LT_LAYOUT_EVENT_ADDRESS_BITS 48
#define LT_LAYOUT_EVENT_DEPTH_MASK 8191 /* LT_EVENT_DEPTH_MAX */
#define LT_LAYOUT_EVENT_ENTRY_BIT 62 /* kind ENTRY = 1 */
#define LT_LAYOUT_EVENT_EXIT_BIT 63  /* kind EXIT = 2 */

#ifdef __ASSEMBLER__
/* ---- what both fast paths share (assembler only) ------------------------ */

    .hidden lt_graph_self
    .hidden lt_graph_depth_limit
    .hidden lt_thread
    .hidden lt_active_area

/* The eight registers a fast path may use, pushed and popped with their CFA
 * adjustments; after LT_FAST_PUSH the return slot is LT_FAST_SLOT(%rsp). */
#define LT_FAST_SLOT 64
.macro LT_FAST_PUSH
    .irp reg, rax, rcx, rdx, rsi, rdi, r8, r9, r10
    push %\reg
    .cfi_adjust_cfa_offset 8
    .endr
.endm
.macro LT_FAST_POP
    .irp reg, r10, r9, r8, rdi, rsi, rdx, rcx, rax
    pop %\reg
    .cfi_adjust_cfa_offset -8
    .endr
.endm

/* LT_FAST_THREAD slot, stack, fallback: the thread's slot (lt_thread_self)
 * and shadow stack (lt_graph_self), both present, the slot outside any
 * callback section (seq even); `fallback` otherwise. Uses rax. */
.macro LT_FAST_THREAD slot, stack, fallback
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), \slot
    movq lt_graph_self@gottpoff(%rip), %rax
    movq %fs:(%rax), \stack
    test \slot, \slot
    jz \fallback
    test \stack, \stack
    jz \fallback
    testb $1, LT_LAYOUT_SLOT_SEQ(\slot)
    jnz \fallback
.endm

/* LT_FAST_RECORD word, area, area32, ring, next, undo, undo_busy, done:
 * stores the event `word` as lt_record_event's hot path does (lt_record.c):
 *   1. no area attached: nothing to record, `done`;
 *   2. the thread's ring of that area, not busy (`undo` otherwise);
 *   3. busy = 1; the area rechecked, head below the ring's limit, no LOST
 *      event owed (`undo_busy` otherwise, busy still 1);
 *   4. the event at head & (capacity - 1): timestamp (rdtsc), then word;
 *      head + 1; busy = 0; then falls through.
 * rax and rdx are taken (head, rdtsc); area, ring and next are scratch. */
.macro LT_FAST_RECORD word, area, area32, ring, next, undo, undo_busy, done
    mov lt_active_area(%rip), \area
    test \area, \area
    jz \done
    movq lt_thread@gottpoff(%rip), \ring
    cmp \area, %fs:LT_LAYOUT_WRITER_AREA(\ring)
    jne \undo
    movq %fs:LT_LAYOUT_WRITER_RING(\ring), \ring
    test \ring, \ring
    jz \undo
    cmpl $0, LT_LAYOUT_RING_BUSY(\ring)
    jne \undo
    movl $1, LT_LAYOUT_RING_BUSY(\ring)
    mov LT_LAYOUT_RING_HEAD(\ring), %rax
    cmp lt_active_area(%rip), \area
    jne \undo_busy
    cmp LT_LAYOUT_RING_LIMIT(\ring), %rax
    jae \undo_busy
    mov LT_LAYOUT_RING_LOST_TOTAL(\ring), \next
    cmp LT_LAYOUT_RING_LOST_EMITTED(\ring), \next
    jne \undo_busy
    mov LT_LAYOUT_AREA_RING_CAPACITY(\area), \area32
    dec \area32
    and %rax, \area
    shl $LT_LAYOUT_EVENT_SHIFT, \area
    lea LT_LAYOUT_RING_EVENTS(\ring,\area), \area
    lea 1(%rax), \next
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, LT_LAYOUT_EVENT_TIMESTAMP(\area)
    mov \word, LT_LAYOUT_EVENT_WORD(\area)
    mov \next, LT_LAYOUT_RING_HEAD(\ring)
    movl $0, LT_LAYOUT_RING_BUSY(\ring)
.endm
#endif

#endif
