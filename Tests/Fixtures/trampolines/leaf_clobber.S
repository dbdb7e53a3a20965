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

/* rcx as a scratch register, written (zeroed) before it is read on every
 * path: eligible, and the stub saves rcx. */
    .text
    .globl lt_leaf_rcx_scratch_callback
    .type lt_leaf_rcx_scratch_callback,@function
lt_leaf_rcx_scratch_callback:
    xor %ecx, %ecx
    cmp %rsi, %rdi
    setb %cl
    add %rcx, .Lrcx_sink(%rip)
    ret
    .size lt_leaf_rcx_scratch_callback, .-lt_leaf_rcx_scratch_callback

/* rcx written on one path only: the other reads `regs`. Not eligible. */
    .globl lt_leaf_rcx_one_path_callback
    .type lt_leaf_rcx_one_path_callback,@function
lt_leaf_rcx_one_path_callback:
    test %rdi, %rdi
    je 1f
    xor %ecx, %ecx
1:  mov %rcx, .Lrcx_sink(%rip)
    ret
    .size lt_leaf_rcx_one_path_callback, .-lt_leaf_rcx_one_path_callback

/* rcx written whole by a register move (89 f9: `mov %edi, %ecx` clears the
 * upper half): eligible. */
    .globl lt_leaf_rcx_moved_callback
    .type lt_leaf_rcx_moved_callback,@function
lt_leaf_rcx_moved_callback:
    .byte 0x89, 0xf9
    add %rcx, .Lrcx_sink(%rip)
    ret
    .size lt_leaf_rcx_moved_callback, .-lt_leaf_rcx_moved_callback

/* rcx written in part (cl only): the rest is `regs`. Not eligible. */
    .globl lt_leaf_rcx_partial_callback
    .type lt_leaf_rcx_partial_callback,@function
lt_leaf_rcx_partial_callback:
    mov %dil, %cl
    add %rcx, .Lrcx_sink(%rip)
    ret
    .size lt_leaf_rcx_partial_callback, .-lt_leaf_rcx_partial_callback

/* rcx written whole, but from itself (lea reads its base): not eligible. */
    .globl lt_leaf_rcx_self_callback
    .type lt_leaf_rcx_self_callback,@function
lt_leaf_rcx_self_callback:
    lea 1(%rcx), %ecx
    add %rcx, .Lrcx_sink(%rip)
    ret
    .size lt_leaf_rcx_self_callback, .-lt_leaf_rcx_self_callback

    .data
    .align 8
.Lrcx_sink:
    .quad 0
    .section .note.GNU-stack,"",@progbits

/* lt_leaf_pic_callback: position-independent (no rip-relative operand), so
 * a test can copy its bytes [lt_leaf_pic_callback, lt_leaf_pic_callback_end)
 * far from every site (beyond +-2 GiB: the stub calls it through a literal).
 * Its ops's data points at { calls, ip, parent_ip } (lt_ops.data is at +8,
 * lt_tramp.h). It mentions rax rdx rsi rdi r8-r11 and clobbers them all:
 * with the alignment push, the stub takes two slots. */
    .text
    .globl lt_leaf_pic_callback, lt_leaf_pic_callback_end
    .type lt_leaf_pic_callback,@function
lt_leaf_pic_callback:
    mov 8(%rdx), %rax
    lock incq (%rax)
    mov %rdi, 8(%rax)
    mov %rsi, 16(%rax)
    mov $-1, %rax
    mov $-1, %rdx
    mov $-1, %rsi
    mov $-1, %rdi
    mov $-1, %r8
    mov $-1, %r9
    mov $-1, %r10
    mov $-1, %r11
    ret
lt_leaf_pic_callback_end:
    .size lt_leaf_pic_callback, .-lt_leaf_pic_callback
    .section .note.GNU-stack,"",@progbits
