/* lt_tramp_x86_64.S — the two entries of the trampoline stubs:
 *   lt_tramp_entry       fills all of lt_regs and honours a new resume
 *                        address (ops with LT_OPS_SAVE_REGS or
 *                        LT_OPS_MODIFY_RESUME, and every iterator);
 *   lt_tramp_entry_lean  the same protocol without r12-r14, resume and the
 *                        resume write-back (every other ops): 4 stores and
 *                        a compare fewer, about 0.5 ns a call.
 *
 * Entered by `jmp` from a 32-byte stub (lt_tramp.h) with:
 *   r11        -> the stub's record { func, ops }
 *   [rsp]      =  site + 5 (return address into the traced function)
 *   [rsp + 8]  =  parent_ip (the traced function's own return address)
 *   every argument register of the C and Swift conventions live.
 *
 * Frame (rbp-based, rsp aligned down to 16 whatever the caller did):
 *   rsp + 0   .. 255   struct lt_regs (livetrace.h; xmm at +128, 16-aligned)
 *   rsp + 256          the record pointer (r11), parked across the slow
 *                      paths' C calls (the fast path keeps it in r11)
 *   rsp + 264          unused (the slot is reloaded from TLS after the call:
 *                      two loads are cheaper than a store on this path)
 *
 * Register contract: rdi rsi rdx rcx r8 r9 rax r10 xmm0-7 are restored from
 * lt_regs; r12 r13 r14 rbx r15 rbp are callee-saved in the C convention the
 * callback follows; r11 is scratch at function entry in both conventions;
 * errno is restored; flags are not part of either convention at entry.
 * Only xmm0-7 of the vector state are preserved (not the ymm/zmm upper halves).
 *
 * Steps E1/E2 of the quiescence protocol are marked below; everything between
 * the site's call and E1 lives in section lt_tramp_text (see lt_tramp.h).
 */
#define REGS_RDI     0
#define REGS_RSI     8
#define REGS_RDX     16
#define REGS_RCX     24
#define REGS_R8      32
#define REGS_R9      40
#define REGS_RAX     48
#define REGS_R10     56
#define REGS_R12     64
#define REGS_R13     72
#define REGS_R14     80
#define REGS_RSP     88
#define REGS_RESUME  96
#define REGS_CURRENT 104
#define REGS_ERRNO   112
#define REGS_XMM     128
#define FRAME_RECORD 256
#define FRAME_SIZE   272
#define RECORD_FUNC  0
#define RECORD_OPS   8
#define SLOT_SEQ     0
#define SLOT_SKIPPED 8
#define SLOT_READY   20

/* Steps shared by both entries. FRAME: the rbp frame, aligned; SAVE: the
 * argument registers and xmm0-7 into lt_regs; RESTORE: the same back. */
.macro FRAME
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    mov %rsp, %rbp
    .cfi_def_cfa_register %rbp
    sub $FRAME_SIZE, %rsp
    and $-16, %rsp
.endm
.macro SAVE
    mov %rdi, REGS_RDI(%rsp)
    mov %rsi, REGS_RSI(%rsp)
    mov %rdx, REGS_RDX(%rsp)
    mov %rcx, REGS_RCX(%rsp)
    mov %r8,  REGS_R8(%rsp)
    mov %r9,  REGS_R9(%rsp)
    mov %rax, REGS_RAX(%rsp)
    mov %r10, REGS_R10(%rsp)
    movaps %xmm0, REGS_XMM+0(%rsp)
    movaps %xmm1, REGS_XMM+16(%rsp)
    movaps %xmm2, REGS_XMM+32(%rsp)
    movaps %xmm3, REGS_XMM+48(%rsp)
    movaps %xmm4, REGS_XMM+64(%rsp)
    movaps %xmm5, REGS_XMM+80(%rsp)
    movaps %xmm6, REGS_XMM+96(%rsp)
    movaps %xmm7, REGS_XMM+112(%rsp)
.endm
.macro RESTORE
    movaps REGS_XMM+0(%rsp), %xmm0
    movaps REGS_XMM+16(%rsp), %xmm1
    movaps REGS_XMM+32(%rsp), %xmm2
    movaps REGS_XMM+48(%rsp), %xmm3
    movaps REGS_XMM+64(%rsp), %xmm4
    movaps REGS_XMM+80(%rsp), %xmm5
    movaps REGS_XMM+96(%rsp), %xmm6
    movaps REGS_XMM+112(%rsp), %xmm7
    mov REGS_RDI(%rsp), %rdi
    mov REGS_RSI(%rsp), %rsi
    mov REGS_RDX(%rsp), %rdx
    mov REGS_RCX(%rsp), %rcx
    mov REGS_R8(%rsp),  %r8
    mov REGS_R9(%rsp),  %r9
    mov REGS_RAX(%rsp), %rax
    mov REGS_R10(%rsp), %r10
.endm

    .hidden lt_errno_tpoff
    .hidden lt_thread_overflow
    .hidden lt_thread_claim
    .hidden lt_thread_finish_claim

    .section lt_tramp_text,"ax",@progbits
    .globl lt_tramp_entry
    .type lt_tramp_entry,@function
    .p2align 4
lt_tramp_entry:
    .cfi_startproc
    FRAME
    SAVE
    mov %r12, REGS_R12(%rsp)
    mov %r13, REGS_R13(%rsp)
    mov %r14, REGS_R14(%rsp)
    /* This thread's slot (initial-exec TLS). r11 (the record) stays live
     * on the fast path; only the slow paths, which call C, park it in the
     * frame. */
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    test %rax, %rax
    jz .Lclaim
.Lhave_slot:
    testb $1, SLOT_SEQ(%rax)
    jnz .Lnested
    /* E1: seq becomes odd; every record/ops/list read comes after this. */
    incq SLOT_SEQ(%rax)
    cmpb $0, SLOT_READY(%rax)
    jz .Lfinish_claim
.Lready:
    lea 16(%rbp), %rcx
    mov %rcx, REGS_RSP(%rsp)
    mov 8(%rbp), %rdi
    mov %rdi, REGS_RESUME(%rsp)
    sub $5, %rdi                          /* ip: the 5-byte site */
    mov 16(%rbp), %rsi                    /* parent_ip */
    mov RECORD_OPS(%r11), %rdx
    mov %rdx, REGS_CURRENT(%rsp)
    mov lt_errno_tpoff(%rip), %rcx
    mov %fs:(%rcx), %ecx
    mov %ecx, REGS_ERRNO(%rsp)
    mov %rsp, %rcx
    call *RECORD_FUNC(%r11)
    /* errno and the return address are written back only when they changed:
     * stores are what this path spends its time on. */
    mov REGS_ERRNO(%rsp), %ecx
    mov lt_errno_tpoff(%rip), %rdx
    cmp %ecx, %fs:(%rdx)
    jne .Lrestore_errno
.Lerrno_done:
    mov REGS_RESUME(%rsp), %rax
    cmp %rax, 8(%rbp)
    jne .Lwrite_resume
.Lresume_done:
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    /* E2: seq becomes even; only this permanent code runs from here. */
    incq SLOT_SEQ(%rax)
.Lrestore:
    RESTORE
    .cfi_remember_state
    leave
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_restore_state
.Lnested:
    /* The recursion guard: a callback called a traced function. */
    incq SLOT_SKIPPED(%rax)
    jmp .Lrestore
.Lclaim:
    mov %r11, FRAME_RECORD(%rsp)
    call lt_thread_claim
    mov FRAME_RECORD(%rsp), %r11
    test %rax, %rax
    jnz .Lhave_slot
    lock incq lt_thread_overflow(%rip)
    jmp .Lrestore
.Lfinish_claim:
    mov %r11, FRAME_RECORD(%rsp)
    mov %rax, %rdi
    call lt_thread_finish_claim
    mov FRAME_RECORD(%rsp), %r11
    jmp .Lready
.Lrestore_errno:
    mov %ecx, %fs:(%rdx)
    jmp .Lerrno_done
.Lwrite_resume:
    mov %rax, 8(%rbp)
    jmp .Lresume_done
    .cfi_endproc
    .size lt_tramp_entry, .-lt_tramp_entry

/* lt_tramp_entry_lean: the entry of ops without LT_OPS_SAVE_REGS or
 * LT_OPS_MODIFY_RESUME (never the iterator). The same protocol and register
 * contract as lt_tramp_entry; lt_regs is filled with the argument registers,
 * xmm0-7, rsp and current only (r12-r14 and resume are not written: such a
 * callback has no use for them), and the return address is never rewritten. */
    .globl lt_tramp_entry_lean
    .type lt_tramp_entry_lean,@function
    .p2align 4
lt_tramp_entry_lean:
    .cfi_startproc
    FRAME
    SAVE
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    test %rax, %rax
    jz .Llean_claim
.Llean_have_slot:
    testb $1, SLOT_SEQ(%rax)
    jnz .Llean_nested
    /* E1 */
    incq SLOT_SEQ(%rax)
    cmpb $0, SLOT_READY(%rax)
    jz .Llean_finish_claim
.Llean_ready:
    lea 16(%rbp), %rcx
    mov %rcx, REGS_RSP(%rsp)
    mov 8(%rbp), %rdi
    sub $5, %rdi
    mov 16(%rbp), %rsi
    mov RECORD_OPS(%r11), %rdx
    mov %rdx, REGS_CURRENT(%rsp)
    mov lt_errno_tpoff(%rip), %rcx
    mov %fs:(%rcx), %ecx
    mov %ecx, REGS_ERRNO(%rsp)
    mov %rsp, %rcx
    call *RECORD_FUNC(%r11)
    mov REGS_ERRNO(%rsp), %ecx
    mov lt_errno_tpoff(%rip), %rdx
    cmp %ecx, %fs:(%rdx)
    jne .Llean_restore_errno
.Llean_errno_done:
    movq lt_thread_self@gottpoff(%rip), %rax
    movq %fs:(%rax), %rax
    /* E2 */
    incq SLOT_SEQ(%rax)
.Llean_restore:
    RESTORE
    .cfi_remember_state
    leave
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_restore_state
.Llean_nested:
    incq SLOT_SKIPPED(%rax)
    jmp .Llean_restore
.Llean_claim:
    mov %r11, FRAME_RECORD(%rsp)
    call lt_thread_claim
    mov FRAME_RECORD(%rsp), %r11
    test %rax, %rax
    jnz .Llean_have_slot
    lock incq lt_thread_overflow(%rip)
    jmp .Llean_restore
.Llean_finish_claim:
    mov %r11, FRAME_RECORD(%rsp)
    mov %rax, %rdi
    call lt_thread_finish_claim
    mov FRAME_RECORD(%rsp), %r11
    jmp .Llean_ready
.Llean_restore_errno:
    mov %ecx, %fs:(%rdx)
    jmp .Llean_errno_done
    .cfi_endproc
    .size lt_tramp_entry_lean, .-lt_tramp_entry_lean

    .section .note.GNU-stack,"",@progbits
