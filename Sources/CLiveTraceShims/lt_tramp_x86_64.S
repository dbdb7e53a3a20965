/* lt_tramp_x86_64.S — the three entries of the trampoline stubs:
 *   lt_tramp_entry       fills all of lt_regs (ops with LT_OPS_SAVE_REGS or
 *                        LT_OPS_MODIFY_RESUME, and every iterator);
 *   lt_tramp_entry_lean  the same without r12-r14 (every other ops, unless
 *                        its callback takes a leaf stub, StubX86_64.swift,
 *                        which needs no entry);
 *   lt_tramp_entry_graph the function graph's own ops (at the end of this
 *                        file: its common case in assembly, the rest through
 *                        the lean entry).
 *
 * Entered by `jmp` from a 64-byte stub (lt_tramp.h), itself reached by the
 * site's `jmp`, so nothing was pushed since the function's caller called it:
 *   r11        -> the stub's record { func, ops, resume, site }
 *   [rsp]      =  parent_ip (the traced function's return address)
 *   every argument register of the C and Swift conventions live.
 *
 * Frame (rbp-based, rsp aligned down to 16 whatever the caller did):
 *   rbp + 8            parent_ip: the function's return slot (regs->rsp)
 *   rsp + 0   .. 255   struct lt_regs (livetrace.h; xmm at +128, 16-aligned)
 *   rsp + 256          the record pointer (r11), parked across the slow
 *                      paths' C calls (the fast path keeps it in r11)
 *
 * The way out (after E2) continues the function at regs->resume (the
 * record's site + 5, or what a MODIFY_RESUME callback set):
 *   - normally `jmp *resume`: the function runs with its return slot as the
 *     caller left it;
 *   - when a callback has hooked the return slot (the function graph wrote
 *     lt_graph_return_trampoline there), the slot is popped and the function
 *     is *called* from lt_graph_call_body, whose return address is that same
 *     trampoline: the function's `ret` is then predicted by the return stack
 *     buffer, and so is the trampoline's own `ret` to the caller (a return
 *     address overwritten in place costs two mispredicted returns and a
 *     desynchronized return stack: ~27 ns a call on this machine).
 *
 * Register contract: rdi rsi rdx rcx r8 r9 rax r10 xmm0-7 are restored from
 * lt_regs; r12 r13 r14 rbx r15 rbp are callee-saved in the C convention the
 * callback follows; r11 is scratch at function entry in both conventions
 * (it carries the resume address out); errno is restored; flags are not part
 * of either convention at entry. Only xmm0-7 of the vector state are
 * preserved (not the ymm/zmm upper halves).
 *
 * Steps E1/E2 of the quiescence protocol are marked below; everything between
 * the site's jump and E1 lives in section lt_tramp_text (see lt_tramp.h), and
 * nothing reads the record after E2.
 */
#include "lt_tramp_layout.h"

    .hidden lt_errno_tpoff
    .hidden lt_thread_overflow
    .hidden lt_thread_claim
    .hidden lt_thread_finish_claim
    .hidden lt_graph_call_body
    .hidden lt_graph_return_point

/* Steps shared by the full and the lean entry. FRAME: the rbp frame, aligned; SAVE: the
 * argument registers and xmm0-7 into lt_regs; RESTORE: the same back. */
.macro FRAME
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    mov %rsp, %rbp
    .cfi_def_cfa_register %rbp
    sub $LT_LAYOUT_TRAMP_FRAME_SIZE, %rsp
    and $-16, %rsp
.endm
.macro SAVE
    mov %rdi, LT_LAYOUT_REGS_RDI(%rsp)
    mov %rsi, LT_LAYOUT_REGS_RSI(%rsp)
    mov %rdx, LT_LAYOUT_REGS_RDX(%rsp)
    mov %rcx, LT_LAYOUT_REGS_RCX(%rsp)
    mov %r8,  LT_LAYOUT_REGS_R8(%rsp)
    mov %r9,  LT_LAYOUT_REGS_R9(%rsp)
    mov %rax, LT_LAYOUT_REGS_RAX(%rsp)
    mov %r10, LT_LAYOUT_REGS_R10(%rsp)
    movaps %xmm0, LT_LAYOUT_REGS_XMM+0(%rsp)
    movaps %xmm1, LT_LAYOUT_REGS_XMM+16(%rsp)
    movaps %xmm2, LT_LAYOUT_REGS_XMM+32(%rsp)
    movaps %xmm3, LT_LAYOUT_REGS_XMM+48(%rsp)
    movaps %xmm4, LT_LAYOUT_REGS_XMM+64(%rsp)
    movaps %xmm5, LT_LAYOUT_REGS_XMM+80(%rsp)
    movaps %xmm6, LT_LAYOUT_REGS_XMM+96(%rsp)
    movaps %xmm7, LT_LAYOUT_REGS_XMM+112(%rsp)
.endm
.macro RESTORE
    movaps LT_LAYOUT_REGS_XMM+0(%rsp), %xmm0
    movaps LT_LAYOUT_REGS_XMM+16(%rsp), %xmm1
    movaps LT_LAYOUT_REGS_XMM+32(%rsp), %xmm2
    movaps LT_LAYOUT_REGS_XMM+48(%rsp), %xmm3
    movaps LT_LAYOUT_REGS_XMM+64(%rsp), %xmm4
    movaps LT_LAYOUT_REGS_XMM+80(%rsp), %xmm5
    movaps LT_LAYOUT_REGS_XMM+96(%rsp), %xmm6
    movaps LT_LAYOUT_REGS_XMM+112(%rsp), %xmm7
    mov LT_LAYOUT_REGS_RDI(%rsp), %rdi
    mov LT_LAYOUT_REGS_RSI(%rsp), %rsi
    mov LT_LAYOUT_REGS_RDX(%rsp), %rdx
    mov LT_LAYOUT_REGS_RCX(%rsp), %rcx
    mov LT_LAYOUT_REGS_R8(%rsp),  %r8
    mov LT_LAYOUT_REGS_R9(%rsp),  %r9
    mov LT_LAYOUT_REGS_RAX(%rsp), %rax
    mov LT_LAYOUT_REGS_R10(%rsp), %r10
.endm

/* ENTRY name, full: one entry; `full` also saves r12-r14. */
.macro ENTRY name, full
    .globl \name
    .type \name,@function
    .p2align 4
\name:
\name\()_local:                   /* for jumps from this file: no PLT */
    .cfi_startproc
    FRAME
    SAVE
.if \full
    mov %r12, LT_LAYOUT_REGS_R12(%rsp)
    mov %r13, LT_LAYOUT_REGS_R13(%rsp)
    mov %r14, LT_LAYOUT_REGS_R14(%rsp)
.endif
    mov LT_LAYOUT_RECORD_RESUME(%r11), %rcx
    mov %rcx, LT_LAYOUT_REGS_RESUME(%rsp)
    /* This thread's slot (initial-exec TLS). r11 (the record) stays live
     * on the fast path; only the slow paths, which call C, park it. */
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    test %rax, %rax
    jz .L\name\()_claim
.L\name\()_have_slot:
    testb $1, LT_LAYOUT_SLOT_SEQ(%rax)
    jnz .L\name\()_nested
    /* E1: seq becomes odd; every record/ops/list read comes after this. */
    incq LT_LAYOUT_SLOT_SEQ(%rax)
    cmpb $0, LT_LAYOUT_SLOT_READY(%rax)
    jz .L\name\()_finish_claim
.L\name\()_ready:
    lea 8(%rbp), %rcx
    mov %rcx, LT_LAYOUT_REGS_RSP(%rsp)
    mov LT_LAYOUT_RECORD_SITE(%r11), %rdi           /* ip: the 5-byte site */
    mov 8(%rbp), %rsi                     /* parent_ip */
    mov LT_LAYOUT_RECORD_OPS(%r11), %rdx
    mov %rdx, LT_LAYOUT_REGS_CURRENT(%rsp)
    mov lt_errno_tpoff(%rip), %rcx
    mov %fs:(%rcx), %ecx
    mov %ecx, LT_LAYOUT_REGS_ERRNO(%rsp)
    mov %rsp, %rcx
    call *LT_LAYOUT_RECORD_FUNC(%r11)
    /* errno is written back only when it changed: stores are what this
     * path spends its time on. */
    mov LT_LAYOUT_REGS_ERRNO(%rsp), %ecx
    mov lt_errno_tpoff(%rip), %rdx
    cmp %ecx, %fs:(%rdx)
    jne .L\name\()_restore_errno
.L\name\()_errno_done:
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    /* E2: seq becomes even; only permanent code runs from here. */
    incq LT_LAYOUT_SLOT_SEQ(%rax)
    lea lt_graph_return_point(%rip), %r11
    cmp %r11, 8(%rbp)
.L\name\()_leave:
    /* ZF set: the return slot is hooked (the nested and overflow paths
     * arrive with ZF clear). RESTORE, mov and leave keep the flags. */
    RESTORE
    mov LT_LAYOUT_REGS_RESUME(%rsp), %r11
    .cfi_remember_state
    leave
    .cfi_def_cfa %rsp, 8
    je .L\name\()_call_body
    jmp *%r11
.L\name\()_call_body:
    /* Pop the hooked slot and call the function (see above). */
    add $8, %rsp
    .cfi_def_cfa_offset 0
    .cfi_undefined rip
    jmp lt_graph_call_body
    .cfi_restore_state
.L\name\()_nested:
    /* The recursion guard: a callback called a traced function. */
    incq LT_LAYOUT_SLOT_SKIPPED(%rax)
    test %rsp, %rsp
    jmp .L\name\()_leave
.L\name\()_claim:
    mov %r11, LT_LAYOUT_FRAME_RECORD(%rsp)
    call lt_thread_claim
    mov LT_LAYOUT_FRAME_RECORD(%rsp), %r11
    test %rax, %rax
    jnz .L\name\()_have_slot
    lock incq lt_thread_overflow(%rip)
    test %rsp, %rsp
    jmp .L\name\()_leave
.L\name\()_finish_claim:
    mov %r11, LT_LAYOUT_FRAME_RECORD(%rsp)
    mov %rax, %rdi
    call lt_thread_finish_claim
    mov LT_LAYOUT_FRAME_RECORD(%rsp), %r11
    jmp .L\name\()_ready
.L\name\()_restore_errno:
    mov %ecx, %fs:(%rdx)
    jmp .L\name\()_errno_done
    .cfi_endproc
    .size \name, .-\name
.endm

    .section lt_tramp_text,"ax",@progbits
    ENTRY lt_tramp_entry, 1
    ENTRY lt_tramp_entry_lean, 0

/* lt_tramp_entry_graph: the entry of the function graph's own ops. The
 * common case runs here, in assembly with eight registers pushed; the rest
 * falls back to lt_tramp_entry_lean (which calls lt_graph_entry_callback,
 * lt_graph.c) with nothing changed. It is lt_graph_entry_callback's steps
 * 2-4 for a thread whose slot and shadow stack exist, outside any callback
 * section, whose call nests in the top frame (or is the first), with room on
 * the shadow stack and in its ring:
 *   1. checks: slot, stack, seq even, ready, ip below 2^48, count below
 *      the capacity, top frame HOOKED with its slot above this one;
 *   2. E1 (seq odd): the recursion guard, and the section the reclaimer sees;
 *   3. the frame pushed as lt_graph_push_frame does: state FREE, count + 1,
 *      slot / return address / function, then state HOOKED (| SILENT past the
 *      depth limit) — x86 keeps the stores in program order, which is all a
 *      signal handler on this thread can observe;
 *   4. the ENTRY event (LT_FAST_RECORD, lt_graph_layout.h). When the ring
 *      cannot take it: busy 0, the frame released (FREE, then count), E2,
 *      and the fallback;
 *   5. the slot hooked; the resume address taken from the record; E2;
 *   6. the registers back, the hooked slot popped, and the function called
 *      from lt_graph_call_body (lt_return_x86_64.S), as the other entries do.
 * Registers: rcx the thread's slot, rsi its shadow stack, eax the new
 * frame's index, rdx the frame, rdi the return slot, r9 ip then the event
 * word. Offsets: lt_graph_layout.h (checked against the C structures). */
#include "lt_graph_layout.h"
    .globl lt_tramp_entry_graph
    .type lt_tramp_entry_graph,@function
    .p2align 4
lt_tramp_entry_graph:
    .cfi_startproc
    LT_FAST_PUSH
    /* Step 1. */
    LT_FAST_THREAD %rcx, %rsi, .Lgraph_fallback
    cmpb $0, LT_LAYOUT_SLOT_READY(%rcx)
    je .Lgraph_fallback
    mov LT_LAYOUT_RECORD_SITE(%r11), %r9
    mov %r9, %rax
    shr $LT_LAYOUT_EVENT_ADDRESS_BITS, %rax
    jnz .Lgraph_fallback
    mov LT_LAYOUT_STACK_COUNT(%rsi), %eax
    cmp $LT_LAYOUT_STACK_CAPACITY, %eax
    jae .Lgraph_fallback
    mov %rax, %rdx
    shl $LT_LAYOUT_FRAME_SHIFT, %rdx
    lea LT_LAYOUT_STACK_FRAMES(%rsi,%rdx), %rdx
    lea LT_FAST_SLOT(%rsp), %rdi
    test %eax, %eax
    jz .Lgraph_first
    cmp %rdi, LT_LAYOUT_FRAME_SLOT-LT_LAYOUT_FRAME_SIZE(%rdx)
    jbe .Lgraph_fallback
    mov LT_LAYOUT_FRAME_STATE-LT_LAYOUT_FRAME_SIZE(%rdx), %r8d
    and $LT_LAYOUT_FRAME_STATE_MASK, %r8d
    cmp $LT_LAYOUT_FRAME_HOOKED, %r8d
    jne .Lgraph_fallback
.Lgraph_first:
    /* Step 2 (E1). */
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
    /* Step 3. */
    movl $LT_LAYOUT_FRAME_FREE, LT_LAYOUT_FRAME_STATE(%rdx)
    lea 1(%rax), %r8d
    mov %r8d, LT_LAYOUT_STACK_COUNT(%rsi)
    mov %rdi, LT_LAYOUT_FRAME_SLOT(%rdx)
    mov (%rdi), %r8
    mov %r8, LT_LAYOUT_FRAME_RETURN(%rdx)
    mov %r9, LT_LAYOUT_FRAME_FUNCTION(%rdx)
    cmp lt_graph_depth_limit(%rip), %eax
    jae .Lgraph_silent
    movl $LT_LAYOUT_FRAME_HOOKED, LT_LAYOUT_FRAME_STATE(%rdx)
    /* Step 4. */
    shl $LT_LAYOUT_EVENT_DEPTH_SHIFT, %rax
    or %rax, %r9
    bts $LT_LAYOUT_EVENT_ENTRY_BIT, %r9
    LT_FAST_RECORD %r9, %r8, %r8d, %rdi, %r10, .Lgraph_undo, .Lgraph_undo_busy, .Lgraph_hook
.Lgraph_hook:
    /* Step 5. */
    lea lt_graph_return_point(%rip), %rax
    mov %rax, LT_FAST_SLOT(%rsp)
    mov LT_LAYOUT_RECORD_RESUME(%r11), %r11
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
    /* Step 6. */
    .cfi_remember_state
    LT_FAST_POP
    add $8, %rsp
    .cfi_def_cfa_offset 0
    .cfi_undefined rip
    jmp lt_graph_call_body
    .cfi_restore_state
.Lgraph_silent:
    movl $(LT_LAYOUT_FRAME_HOOKED | LT_LAYOUT_FRAME_SILENT), LT_LAYOUT_FRAME_STATE(%rdx)
    jmp .Lgraph_hook
.Lgraph_undo_busy:
    movl $0, LT_LAYOUT_RING_BUSY(%rdi)
.Lgraph_undo:
    /* The frame released as lt_graph_release_top does (the index back from
     * the word), then E2. */
    movl $LT_LAYOUT_FRAME_FREE, LT_LAYOUT_FRAME_STATE(%rdx)
    shr $LT_LAYOUT_EVENT_DEPTH_SHIFT, %r9
    and $LT_LAYOUT_EVENT_DEPTH_MASK, %r9d
    mov %r9d, LT_LAYOUT_STACK_COUNT(%rsi)
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
.Lgraph_fallback:
    LT_FAST_POP
    jmp lt_tramp_entry_lean_local
    .cfi_endproc
    .size lt_tramp_entry_graph, .-lt_tramp_entry_graph

    .section .note.GNU-stack,"",@progbits
