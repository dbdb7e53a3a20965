/* Prologue shapes with known relocation verdicts (PrologueRelocation.swift).
 * The rel_* functions are written in assembly so that their bytes do not
 * depend on the compiler; c_* are compiled code whose verdict is checked at
 * -O0 and -O2. Each function's result is a pure function of its argument, so
 * a call through the relocated stub can be compared with a direct call. */
__attribute__((visibility("hidden"))) int rel_counter = 41;
__attribute__((visibility("hidden"))) int rel_table[4] = {10, 20, 30, 40};
int rel_helper(int x) { return x + 1; }

__asm__(
    ".text\n"
    /* mov eax, [rip + rel_counter]: rip-relative load first. */
    ".globl rel_rip_load\n .type rel_rip_load,@function\n"
    "rel_rip_load:\n"
    "  movl rel_counter(%rip), %eax\n"
    "  addl %edi, %eax\n"
    "  ret\n"
    ".size rel_rip_load, .-rel_rip_load\n"
    /* lea rax, [rip + rel_table]: rip-relative address first. */
    ".globl rel_rip_lea\n .type rel_rip_lea,@function\n"
    "rel_rip_lea:\n"
    "  leaq rel_table(%rip), %rax\n"
    "  andl $3, %edi\n"
    "  movl (%rax,%rdi,4), %eax\n"
    "  ret\n"
    ".size rel_rip_lea, .-rel_rip_lea\n"
    /* A short jcc inside the moved bytes (widened in the stub). */
    ".globl rel_jcc_inside\n .type rel_jcc_inside,@function\n"
    "rel_jcc_inside:\n"
    "  testl %edi, %edi\n"
    "  js 1f\n"
    "  movl %edi, %eax\n"
    "  addl %eax, %eax\n"
    "  ret\n"
    "1: movl %edi, %eax\n"
    "  negl %eax\n"
    "  ret\n"
    ".size rel_jcc_inside, .-rel_jcc_inside\n"
    /* A jcc right after the 5 patched bytes. */
    ".globl rel_jcc_after\n .type rel_jcc_after,@function\n"
    "rel_jcc_after:\n"
    "  movl %edi, %eax\n"
    "  subl $10, %eax\n"
    "  jle 1f\n"
    "  imull $7, %eax, %eax\n"
    "1: ret\n"
    ".size rel_jcc_after, .-rel_jcc_after\n"
    /* endbr64, then an ordinary frame. */
    ".globl rel_endbr\n .type rel_endbr,@function\n"
    "rel_endbr:\n"
    "  endbr64\n"
    "  pushq %rbp\n"
    "  movq %rsp, %rbp\n"
    "  leal 5(%rdi), %eax\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size rel_endbr, .-rel_endbr\n"
    /* A short jmp inside the moved bytes. */
    ".globl rel_jmp_inside\n .type rel_jmp_inside,@function\n"
    "rel_jmp_inside:\n"
    "  movl %edi, %eax\n"
    "  jmp 1f\n"
    "  nop\n"
    "1: addl $100, %eax\n"
    "  ret\n"
    ".size rel_jmp_inside, .-rel_jmp_inside\n"
    /* Refused: a call in the moved bytes. */
    ".globl rel_call_first\n .type rel_call_first,@function\n"
    "rel_call_first:\n"
    "  call rel_helper@PLT\n"
    "  ret\n"
    ".size rel_call_first, .-rel_call_first\n"
    /* Refused: 3 bytes. */
    ".globl rel_short\n .type rel_short,@function\n"
    "rel_short:\n"
    "  xorl %eax, %eax\n"
    "  ret\n"
    ".size rel_short, .-rel_short\n"
    /* Refused: a loop whose head is the entry. */
    ".globl rel_loop_entry\n .type rel_loop_entry,@function\n"
    "rel_loop_entry:\n"
    "  subl $1, %edi\n"
    "  jnz rel_loop_entry\n"
    "  movl %edi, %eax\n"
    "  ret\n"
    ".size rel_loop_entry, .-rel_loop_entry\n"
    /* Refused: a branch back into the moved bytes (offset 2). */
    ".globl rel_branch_into\n .type rel_branch_into,@function\n"
    "rel_branch_into:\n"
    "  movl %edi, %eax\n"
    "1: addl $1, %eax\n"
    "  cmpl $100, %eax\n"
    "  jl 1b\n"
    "  ret\n"
    ".size rel_branch_into, .-rel_branch_into\n"
    /* Refused: jrcxz has no rel32 form. */
    ".globl rel_jrcxz\n .type rel_jrcxz,@function\n"
    "rel_jrcxz:\n"
    "  jrcxz 1f\n"
    "  movl $1, %eax\n"
    "  ret\n"
    "1: xorl %eax, %eax\n"
    "  ret\n"
    ".size rel_jrcxz, .-rel_jrcxz\n"
    /* Refused: a syscall before the last moved instruction. */
    ".globl rel_syscall_inside\n .type rel_syscall_inside,@function\n"
    "rel_syscall_inside:\n"
    "  movl %edi, %eax\n"
    "  syscall\n"
    "  movl $7, %eax\n"
    "  ret\n"
    ".size rel_syscall_inside, .-rel_syscall_inside\n"
    /* Slow moved instructions: threads that call it flat out are often
     * interrupted strictly inside the moved bytes (at +2 or +4). */
    ".globl rel_pause2\n .type rel_pause2,@function\n"
    "rel_pause2:\n"
    "  pause\n"
    "  pause\n"
    "  movl %edi, %eax\n"
    "  addl $1, %eax\n"
    "  ret\n"
    ".size rel_pause2, .-rel_pause2\n"
    /* A 10-byte first instruction: more than 8 moved bytes. */
    ".globl rel_long\n .type rel_long,@function\n"
    "rel_long:\n"
    "  movabsq $0x1122334455667788, %rax\n"
    "  addq %rdi, %rax\n"
    "  ret\n"
    ".size rel_long, .-rel_long\n"
    /* Refused: 0x06 (push es) does not exist in 64-bit mode. */
    ".globl rel_undecodable\n .type rel_undecodable,@function\n"
    "rel_undecodable:\n"
    "  .byte 0x06, 0x90, 0x90, 0x90, 0x90, 0xc3\n"
    ".size rel_undecodable, .-rel_undecodable\n"
    /* push rbp; mov rbp, rsp; pop rbp; ret; then a byte that decodes to
       nothing (data): no byte could be a branch into the moved bytes. */
    ".globl rel_data_tail\n .type rel_data_tail,@function\n"
    "rel_data_tail:\n"
    "  .byte 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x06\n"
    ".size rel_data_tail, .-rel_data_tail\n"
    /* The same, then 75 f8 (jne back to +1): a candidate, so the body is
       decoded, and the byte at +6 does not decode. */
    ".globl rel_data_candidate\n .type rel_data_candidate,@function\n"
    "rel_data_candidate:\n"
    "  .byte 0x55, 0x48, 0x89, 0xe5, 0x5d, 0xc3, 0x06, 0x75, 0xf8\n"
    ".size rel_data_candidate, .-rel_data_candidate\n"
);

/* Compiled code: an ordinary function, one that calls, one with a loop. */
int c_mix(int a, int b) { return a * 3 + b; }
int c_sum(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += rel_table[i & 3] ^ i;
    return s;
}
int c_calls(int x) { return rel_helper(x) * 2; }
/* rel_counter is hidden (the assembly addresses it rip-relative). */
int *rel_counter_address(void) { return &rel_counter; }
