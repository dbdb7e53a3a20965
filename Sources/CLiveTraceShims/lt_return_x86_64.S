/* lt_return_x86_64.S — the return trampoline of the function graph.
 *
 * A hooked function's return slot holds lt_graph_return_trampoline
 * (lt_graph.c, entry step 4). The trampoline entry then runs the function
 * from lt_graph_call_body, a `call` placed right before this trampoline, so
 * the return stack buffer predicts the function's `ret` to here and this
 * trampoline's `ret` to the caller. The function's `ret` lands here with:
 *   rsp        =  slot + 8 (the caller's stack pointer after the call)
 *   live       =  the return registers of the C and Swift conventions:
 *                 rax rdx (C, Swift), rcx r8 (Swift), xmm0-xmm3, x87 st0/st1
 *                 (long double, complex long double), r12 (Swift error;
 *                 callee-saved in C, so lt_graph_exit keeps it).
 *
 * Steps:
 *   0. the common case: lt_graph_exit_fast(slot) (lt_graph.c) saves what it
 *      touches itself, pops the frame, records the exit and writes the
 *      original return address back: `ret` there. Otherwise, it changed
 *      nothing and the full path follows;
 *   1. rsp -= 8: rsp is the slot again; the frame is built under it
 *      (the caller's red zone is dead across a call: the call wrote it);
 *   2. save rax rdx rcx r8 r9 rdi rsi r10 r11 xmm0-3 in a 16-aligned frame;
 *   3. call lt_graph_exit(slot): pops the shadow stack, records the exit
 *      (errno saved and restored inside), writes the original return address
 *      into the slot and returns it;
 *   4. restore, `leave` (rsp = slot) and `ret` to the original address.
 * The x87 stack and MXCSR are never touched here nor in lt_graph_exit (no
 * floating point in lt_graph.c), so a long double result in st0 survives.
 *
 * Frame (below rbp, which is slot - 8):
 *   rsp + 0   xmm0  rsp + 16 xmm1  rsp + 32 xmm2  rsp + 48 xmm3
 *   rsp + 64  rax  72 rdx  80 rcx  88 r8  96 r9  104 rdi  112 rsi  120 r10  128 r11
 *
 * CFI: an unwinder that meets the trampoline as a hooked function's return
 * address looks up (address - 1): the `call` before the symbol, where the
 * return address is undefined: a backtrace through a hooked frame ends
 * cleanly at the trampoline instead of walking garbage. (Exceptions and
 * pthread_exit restore the real addresses before unwinding: lt_unwind.c.)
 * Inside the trampoline the return address is at [slot], which holds the
 * original from step 3 on.
 */
#define SAVE_XMM0   0
#define SAVE_XMM1   16
#define SAVE_XMM2   32
#define SAVE_XMM3   48
#define SAVE_RAX    64
#define SAVE_RDX    72
#define SAVE_RCX    80
#define SAVE_R8     88
#define SAVE_R9     96
#define SAVE_RDI    104
#define SAVE_RSI    112
#define SAVE_R10    120
#define SAVE_R11    128
#define FRAME_SIZE  144
#define SLOT_FROM_RBP 8

    .hidden lt_graph_exit
    .hidden lt_graph_exit_fast

    .text
    .globl lt_graph_return_trampoline
    .type lt_graph_return_trampoline,@function
    .globl lt_graph_call_body
    .hidden lt_graph_call_body
    .globl lt_graph_return_point
    .hidden lt_graph_return_point
    .p2align 4
    .cfi_startproc
    .cfi_undefined rip
lt_graph_call_body:
    /* The trampoline entry's way out for a hooked frame (lt_tramp_x86_64.S):
     * the return slot was popped, r11 is where the function continues. */
    call *%r11
lt_graph_return_point:
lt_graph_return_trampoline:
    /* Here CFA = rsp = slot + 8 and the return address is at the slot. */
    .cfi_def_cfa_offset 0
    .cfi_offset rip, -8
    /* Step 0, the fast exit: lt_graph_exit_fast(slot) preserves every
     * register it touches; when it wrote the original return address back,
     * return there. */
    sub $8, %rsp
    .cfi_def_cfa_offset 8
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    mov %rsp, %rbp
    .cfi_def_cfa_register rbp
    and $-16, %rsp
    sub $16, %rsp
    mov %rdi, (%rsp)
    lea SLOT_FROM_RBP(%rbp), %rdi
    call lt_graph_exit_fast
    lea lt_graph_return_point(%rip), %rdi
    cmp %rdi, SLOT_FROM_RBP(%rbp)
    mov (%rsp), %rdi
    leave
    .cfi_def_cfa rsp, 8
    .cfi_restore rbp
    je .Lfull_exit
    ret
.Lfull_exit:
    /* Step 1 (rsp is the slot already). */
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    mov %rsp, %rbp
    .cfi_def_cfa_register rbp
    sub $FRAME_SIZE, %rsp
    and $-16, %rsp
    /* Step 2. */
    mov %rax, SAVE_RAX(%rsp)
    mov %rdx, SAVE_RDX(%rsp)
    mov %rcx, SAVE_RCX(%rsp)
    mov %r8,  SAVE_R8(%rsp)
    mov %r9,  SAVE_R9(%rsp)
    mov %rdi, SAVE_RDI(%rsp)
    mov %rsi, SAVE_RSI(%rsp)
    mov %r10, SAVE_R10(%rsp)
    mov %r11, SAVE_R11(%rsp)
    movaps %xmm0, SAVE_XMM0(%rsp)
    movaps %xmm1, SAVE_XMM1(%rsp)
    movaps %xmm2, SAVE_XMM2(%rsp)
    movaps %xmm3, SAVE_XMM3(%rsp)
    /* Step 3. */
    lea SLOT_FROM_RBP(%rbp), %rdi
    call lt_graph_exit
    mov %rax, SLOT_FROM_RBP(%rbp)
    /* Step 4. */
    movaps SAVE_XMM0(%rsp), %xmm0
    movaps SAVE_XMM1(%rsp), %xmm1
    movaps SAVE_XMM2(%rsp), %xmm2
    movaps SAVE_XMM3(%rsp), %xmm3
    mov SAVE_RAX(%rsp), %rax
    mov SAVE_RDX(%rsp), %rdx
    mov SAVE_RCX(%rsp), %rcx
    mov SAVE_R8(%rsp),  %r8
    mov SAVE_R9(%rsp),  %r9
    mov SAVE_RDI(%rsp), %rdi
    mov SAVE_RSI(%rsp), %rsi
    mov SAVE_R10(%rsp), %r10
    mov SAVE_R11(%rsp), %r11
    leave
    .cfi_def_cfa rsp, 8
    ret
    .cfi_endproc
    .size lt_graph_return_trampoline, .-lt_graph_return_trampoline

    .section .note.GNU-stack,"",@progbits
