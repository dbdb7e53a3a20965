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
#define LT_LAYOUT_RING_LIMIT 72
#define LT_LAYOUT_RING_LAST_TSC 80
#define LT_LAYOUT_RING_LOST_TOTAL 88
#define LT_LAYOUT_RING_LOST_EMITTED 96
#define LT_LAYOUT_RING_BASE 104
#define LT_LAYOUT_RING_NEXT_DEPTH 112
#define LT_LAYOUT_RING_BUSY 120
#define LT_LAYOUT_RING_RECORDS 256  /* LT_RING_HEADER_SIZE: the records follow the header */
#define LT_LAYOUT_RECORD_SHIFT 3    /* 8-byte records */
#define LT_LAYOUT_RECORD_DELTA_LIMIT 0x20000000 /* LT_REC_DELTA_LIMIT */
#define LT_LAYOUT_RING_PREFETCH_AHEAD 64 /* LT_RING_PREFETCH_AHEAD */

/* The event word the fast paths build (the version 2 packing, kept as the
 * paths' register form: lt_ring.h): address | depth << 48 | kind << 62;
 * LT_FAST_RECORD turns it into a version 3 record. */
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
 * stores the event `word` (address, depth, kind: above) as one version 3
 * function record, as lt_record_event's hot path does (lt_record.c):
 *   1. no area attached: nothing to record, `done`;
 *   2. the thread's ring of that area, not busy (`undo` otherwise);
 *   3. busy = 1; the area rechecked, head below the ring's limit, no LOST
 *      record owed, the address's bits 32-47 equal to the stream's base,
 *      the depth the derived one (depth + is-exit == next_depth), the TSC
 *      delta below 2^29 (`undo_busy` otherwise, busy still 1, word and rdx
 *      unchanged);
 *   4. a prefetchw of the slot LT_RING_PREFETCH_AHEAD records ahead
 *      (modulo the capacity: lt_ring.h says why), the record at
 *      head & (capacity - 1), then last_tsc, next_depth
 *      (depth + is-entry), head + 1, busy = 0; then falls through.
 * rax is taken; word and rdx are kept; area, ring and next are scratch. */
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
    mov \word, \next
    shl $16, \next
    shr $48, \next
    cmp LT_LAYOUT_RING_BASE(\ring), \next
    jne \undo_busy
    mov \word, \next
    shr $LT_LAYOUT_EVENT_DEPTH_SHIFT, \next
    and $LT_LAYOUT_EVENT_DEPTH_MASK, \next
    bt $LT_LAYOUT_EVENT_EXIT_BIT, \word
    adc $0, \next
    cmp LT_LAYOUT_RING_NEXT_DEPTH(\ring), \next
    jne \undo_busy
    mov LT_LAYOUT_AREA_RING_CAPACITY(\area), \area32
    dec \area32
    lea LT_LAYOUT_RING_PREFETCH_AHEAD(%rax), \next
    and \area, \next
    prefetchw LT_LAYOUT_RING_RECORDS(\ring,\next,8)
    and %rax, \area
    mov %rdx, \next
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov \next, %rdx
    mov %rax, \next
    sub LT_LAYOUT_RING_LAST_TSC(\ring), \next
    cmp $LT_LAYOUT_RECORD_DELTA_LIMIT, \next
    jae \undo_busy
    mov %rax, LT_LAYOUT_RING_LAST_TSC(\ring)
    shl $32, \next
    mov \word, %rax
    shl $32, %rax
    shr $32, %rax
    or %rax, \next
    mov \word, %rax
    shr $61, %rax
    shl $61, %rax
    or %rax, \next
    mov \next, LT_LAYOUT_RING_RECORDS(\ring,\area,8)
    mov \word, %rax
    shr $LT_LAYOUT_EVENT_DEPTH_SHIFT, %rax
    and $LT_LAYOUT_EVENT_DEPTH_MASK, %eax
    bt $LT_LAYOUT_EVENT_ENTRY_BIT, \word
    adc $0, %rax
    mov %rax, LT_LAYOUT_RING_NEXT_DEPTH(\ring)
    incq LT_LAYOUT_RING_HEAD(\ring)
    movl $0, LT_LAYOUT_RING_BUSY(\ring)
.endm
#endif

#endif
