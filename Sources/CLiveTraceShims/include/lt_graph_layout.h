/* lt_graph_layout.h — the byte offsets the function graph's assembly fast
 * paths (lt_tramp_x86_64.S: lt_tramp_entry_graph; lt_return_x86_64.S: the
 * return trampoline) use to reach the C structures they share with
 * lt_graph.c, lt_tramp.c and lt_record.c. Macros only, so that the
 * assembler can include it; lt_graph.c checks every one against the C
 * layout with _Static_assert (a change of a structure that forgets this file
 * does not compile).
 */
#ifndef LT_GRAPH_LAYOUT_H
#define LT_GRAPH_LAYOUT_H

/* struct lt_thread_slot (lt_tramp.h): the recursion guard and E1/E2. */
#define LT_LAYOUT_SLOT_SEQ 0
#define LT_LAYOUT_SLOT_READY 20

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

#endif
