/* lt_leaf_clobber_callback: a leaf callback (no call, no loop, no vector
 * register) that mentions and clobbers every caller-saved register a leaf
 * stub may save: rax rdx rsi rdi r8 r9 r10 r11 — never rcx, which would make
 * it ineligible (the regs parameter). It stores what it received, so a test
 * can check that the leaf stub passed ip (rdi), parent_ip (rsi) and ops
 * (rdx), and counts its calls. No entry site. */
    .text
    .globl lt_leaf_clobber_callback
    .type lt_leaf_clobber_callback,@function
lt_leaf_clobber_callback:
    mov %rdi, .Lclobber_ip(%rip)
    mov %rsi, .Lclobber_parent(%rip)
    mov %rdx, .Lclobber_ops(%rip)
    mov $-1, %rax
    mov $-1, %rdx
    mov $-1, %rsi
    mov $-1, %rdi
    mov $-1, %r8
    mov $-1, %r9
    mov $-1, %r10
    mov $-1, %r11
    lock incq .Lclobber_calls(%rip)
    ret
    .size lt_leaf_clobber_callback, .-lt_leaf_clobber_callback

    .data
    .align 8
    .globl lt_leaf_clobber_calls, lt_leaf_clobber_ip, lt_leaf_clobber_parent, lt_leaf_clobber_ops
lt_leaf_clobber_calls:
.Lclobber_calls:
    .quad 0
lt_leaf_clobber_ip:
.Lclobber_ip:
    .quad 0
lt_leaf_clobber_parent:
.Lclobber_parent:
    .quad 0
lt_leaf_clobber_ops:
.Lclobber_ops:
    .quad 0
    .section .note.GNU-stack,"",@progbits
