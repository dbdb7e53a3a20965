/* lt_tramp_layout.h — the byte offsets the trampoline assembly
 * (lt_tramp_x86_64.S) uses to reach the structures it shares with C and
 * Swift: struct lt_regs (livetrace.h), the trampoline's stack frame, the
 * stub record (struct lt_stub_record, lt_tramp.h; written by StubX86_64.swift
 * at these offsets) and struct lt_thread_slot (lt_tramp.h). Macros only, so
 * the assembler can include it; lt_tramp.c checks each against the C layout
 * with _Static_assert, and Swift reads the record offsets from here, so a
 * layout change that forgets this file does not compile.
 */
#ifndef LT_TRAMP_LAYOUT_H
#define LT_TRAMP_LAYOUT_H

/* struct lt_regs: what the callback sees (256 bytes). */
#define LT_LAYOUT_REGS_RDI 0
#define LT_LAYOUT_REGS_RSI 8
#define LT_LAYOUT_REGS_RDX 16
#define LT_LAYOUT_REGS_RCX 24
#define LT_LAYOUT_REGS_R8 32
#define LT_LAYOUT_REGS_R9 40
#define LT_LAYOUT_REGS_RAX 48
#define LT_LAYOUT_REGS_R10 56
#define LT_LAYOUT_REGS_R12 64
#define LT_LAYOUT_REGS_R13 72
#define LT_LAYOUT_REGS_R14 80
#define LT_LAYOUT_REGS_RSP 88
#define LT_LAYOUT_REGS_RESUME 96
#define LT_LAYOUT_REGS_CURRENT 104
#define LT_LAYOUT_REGS_ERRNO 112
#define LT_LAYOUT_REGS_XMM 128
#define LT_LAYOUT_REGS_SIZE 256

/* The trampoline's frame: lt_regs, then the stub record's address. */
#define LT_LAYOUT_FRAME_RECORD 256
#define LT_LAYOUT_TRAMP_FRAME_SIZE 272

/* struct lt_stub_record: the four words after a stub's code (stub + 16). */
#define LT_LAYOUT_RECORD_FUNC 0
#define LT_LAYOUT_RECORD_OPS 8
#define LT_LAYOUT_RECORD_RESUME 16
#define LT_LAYOUT_RECORD_SITE 24
#define LT_LAYOUT_RECORD_SIZE 32

/* struct lt_thread_slot: the recursion guard and E1/E2. */
#define LT_LAYOUT_SLOT_SEQ 0
#define LT_LAYOUT_SLOT_SKIPPED 8
#define LT_LAYOUT_SLOT_READY 20

#endif
