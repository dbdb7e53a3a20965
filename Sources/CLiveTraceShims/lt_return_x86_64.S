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
 *   0. rsp -= 8: rsp is the slot again; every frame is built under it
 *      (the caller's red zone is dead across a call: the call wrote it).
 *      The common case runs right here in assembly, with eight registers
 *      pushed and popped: lt_graph_exit's steps for a thread outside any
 *      callback section whose top frame is HOOKED for this slot, with room
 *      in its ring (0a-0d below; the same stores in the same order as
 *      lt_graph_exit and lt_record_event's hot path). Anything else is undone and
 *      the full path follows, rsp the slot again;
 *   1. the full path's frame, under the slot;
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
#include "lt_graph_layout.h"

    .hidden lt_graph_exit

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
    /* Step 0, the fast exit (see above). rsp = slot first: the frame is
     * built below the slot (the caller's red zone is dead across a call).
     * Registers: rcx the thread's slot, rsi its shadow stack, eax the top
     * frame's index, rdx the frame, r8d its state, r9 its function (below
     * 2^48, as the event word needs) then the word. */
    sub $8, %rsp
    .cfi_def_cfa_offset 8
    LT_FAST_PUSH
    /* 0a. The checks. */
    LT_FAST_THREAD %rcx, %rsi, .Lfast_fallback
    mov LT_LAYOUT_STACK_COUNT(%rsi), %eax
    sub $1, %eax
    jb .Lfast_fallback
    mov %rax, %rdx
    shl $LT_LAYOUT_FRAME_SHIFT, %rdx
    lea LT_LAYOUT_STACK_FRAMES(%rsi,%rdx), %rdx
    mov LT_LAYOUT_FRAME_STATE(%rdx), %r8d
    mov %r8d, %edi
    and $LT_LAYOUT_FRAME_STATE_MASK, %edi
    cmp $LT_LAYOUT_FRAME_HOOKED, %edi
    jne .Lfast_fallback
    lea LT_FAST_SLOT(%rsp), %rdi
    cmp %rdi, LT_LAYOUT_FRAME_SLOT(%rdx)
    jne .Lfast_fallback
    mov LT_LAYOUT_FRAME_FUNCTION(%rdx), %r9
    mov %r9, %rdi
    shr $LT_LAYOUT_EVENT_ADDRESS_BITS, %rdi
    jnz .Lfast_fallback
    /* 0b. E1 (seq odd), then the frame popped: the original return address
     * back into the slot, state FREE, count - 1. */
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
    mov LT_LAYOUT_FRAME_RETURN(%rdx), %r10
    mov %r10, LT_FAST_SLOT(%rsp)
    movl $LT_LAYOUT_FRAME_FREE, LT_LAYOUT_FRAME_STATE(%rdx)
    mov %eax, LT_LAYOUT_STACK_COUNT(%rsi)
    test $LT_LAYOUT_FRAME_SILENT, %r8d
    jnz .Lfast_done
    /* 0c. The EXIT event (LT_FAST_RECORD, lt_graph_layout.h). */
    shl $LT_LAYOUT_EVENT_DEPTH_SHIFT, %rax
    or %rax, %r9
    bts $LT_LAYOUT_EVENT_EXIT_BIT, %r9
    LT_FAST_RECORD %r9, %r10, %r10d, %rdi, %rsi, .Lfast_undo, .Lfast_undo_busy, .Lfast_done
.Lfast_done:
    /* 0d. E2, the registers back, and `ret` to the original address. */
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
    .cfi_remember_state
    LT_FAST_POP
    ret
    .cfi_restore_state
.Lfast_undo_busy:
    movl $0, LT_LAYOUT_RING_BUSY(%rdi)
.Lfast_undo:
    /* Undone in the reverse order (count + 1, state, the slot hooked
     * again), E2, and the full path. The index comes back from the word,
     * the stack from the frame's address (rsi may hold the lost count). */
    mov %r9, %rax
    shr $LT_LAYOUT_EVENT_DEPTH_SHIFT, %rax
    and $LT_LAYOUT_EVENT_DEPTH_MASK, %eax
    mov %rax, %rdi
    shl $LT_LAYOUT_FRAME_SHIFT, %rdi
    lea LT_LAYOUT_STACK_FRAMES(%rdi), %rdi
    mov %rdx, %rsi
    sub %rdi, %rsi
    lea 1(%rax), %edi
    mov %edi, LT_LAYOUT_STACK_COUNT(%rsi)
    mov %r8d, LT_LAYOUT_FRAME_STATE(%rdx)
    lea lt_graph_return_point(%rip), %rdi
    mov %rdi, LT_FAST_SLOT(%rsp)
    incq LT_LAYOUT_SLOT_SEQ(%rcx)
.Lfast_fallback:
    LT_FAST_POP
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
