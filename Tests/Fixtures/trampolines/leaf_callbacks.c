/* Callbacks for the leaf analysis (LeafCallbackX86_64.swift), compiled by the
 * tests with gcc -O2 and clang -O2 into shared libraries. The first five must
 * be eligible leaf functions, the others not, each for its own reason. No
 * function here has an entry site. */
#include <stdint.h>
#include "livetrace.h"

#define CALLBACK __attribute__((noinline, used, patchable_function_entry(0, 0)))
#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN uint64_t leaf_counter, leaf_atomic, leaf_even, leaf_odd;
HIDDEN uintptr_t leaf_last_ip;
HIDDEN double leaf_sum;
HIDDEN lt_regs *leaf_last_regs;
struct leaf_node { struct leaf_node *next; };
HIDDEN struct leaf_node *leaf_list;
HIDDEN uint64_t leaf_list_length;
__thread uint64_t leaf_thread_counter __attribute__((tls_model("initial-exec")));

/* Getters for the tests (the variables are hidden so that the callbacks
 * reach them rip-relative, without a GOT load). */
CALLBACK uint64_t leaf_get_counter(void) { return leaf_counter; }

/* Eligible. */
CALLBACK void leaf_empty(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
}
CALLBACK void leaf_increment(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    leaf_counter++;
}
CALLBACK void leaf_atomic_add(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    __atomic_fetch_add(&leaf_atomic, 1, __ATOMIC_RELAXED);
}
CALLBACK void leaf_reads_ip(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)parent_ip; (void)ops; (void)regs;
    leaf_last_ip = ip;
}
/* A branch the compilers keep as a branch: two different stores. */
CALLBACK void leaf_branch(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ops; (void)regs;
    if (__builtin_expect(parent_ip > ip, 1))
        leaf_even += ip;
    else
        leaf_odd = parent_ip;
}

/* Not eligible. */
CALLBACK void leaf_loop(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    uint64_t n = 0;
    for (struct leaf_node *node = leaf_list; node; node = node->next) n++;
    leaf_list_length = n;
}
CALLBACK void leaf_helper(uintptr_t ip);
CALLBACK void leaf_calls(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)parent_ip; (void)ops; (void)regs;
    leaf_helper(ip);
    leaf_counter++;
}
CALLBACK void leaf_helper(uintptr_t ip) { leaf_last_ip = ip; __asm__ volatile("" ::: "memory"); }
CALLBACK void leaf_floating_point(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)parent_ip; (void)ops; (void)regs;
    leaf_sum += (double)(int64_t)ip * 0.5;
}
CALLBACK void leaf_reads_regs(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops;
    leaf_last_regs = regs;
}
CALLBACK void leaf_thread_local(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    leaf_thread_counter++;
}
