/* lt_fix_call_with_regs(fn, in, out): loads every register from `in`, calls
 * fn, stores every register to `out`. With fn = lt_fix_probe (a site then
 * `ret`), out must equal in whatever trampoline the site calls.
 *
 * struct layout (8 bytes each, then 16 per xmm):
 *   0 rax  8 rbx  16 rcx  24 rdx  32 rsi  40 rdi  48 r8  56 r9  64 r10
 *   72 r12  80 r13  88 r14  96 r15  104 pad  112.. xmm0..xmm7 (16 each)
 */
    .text
    .globl lt_fix_call_with_regs
    .type lt_fix_call_with_regs,@function
lt_fix_call_with_regs:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx              /* out: 8(%rsp) after the next pushes */
    push %rdi              /* fn */
    sub $8, %rsp           /* rsp = 0 mod 16 at the call */
    mov %rsi, %r11
    movdqu 112(%r11), %xmm0
    movdqu 128(%r11), %xmm1
    movdqu 144(%r11), %xmm2
    movdqu 160(%r11), %xmm3
    movdqu 176(%r11), %xmm4
    movdqu 192(%r11), %xmm5
    movdqu 208(%r11), %xmm6
    movdqu 224(%r11), %xmm7
    mov 0(%r11), %rax
    mov 8(%r11), %rbx
    mov 16(%r11), %rcx
    mov 24(%r11), %rdx
    mov 32(%r11), %rsi
    mov 40(%r11), %rdi
    mov 48(%r11), %r8
    mov 56(%r11), %r9
    mov 64(%r11), %r10
    mov 72(%r11), %r12
    mov 80(%r11), %r13
    mov 88(%r11), %r14
    mov 96(%r11), %r15
    call *8(%rsp)
    mov 16(%rsp), %r11
    mov %rax, 0(%r11)
    mov %rbx, 8(%r11)
    mov %rcx, 16(%r11)
    mov %rdx, 24(%r11)
    mov %rsi, 32(%r11)
    mov %rdi, 40(%r11)
    mov %r8, 48(%r11)
    mov %r9, 56(%r11)
    mov %r10, 64(%r11)
    mov %r12, 72(%r11)
    mov %r13, 80(%r11)
    mov %r14, 88(%r11)
    mov %r15, 96(%r11)
    movdqu %xmm0, 112(%r11)
    movdqu %xmm1, 128(%r11)
    movdqu %xmm2, 144(%r11)
    movdqu %xmm3, 160(%r11)
    movdqu %xmm4, 176(%r11)
    movdqu %xmm5, 192(%r11)
    movdqu %xmm6, 208(%r11)
    movdqu %xmm7, 224(%r11)
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    .size lt_fix_call_with_regs, .-lt_fix_call_with_regs
    .section .note.GNU-stack,"",@progbits
