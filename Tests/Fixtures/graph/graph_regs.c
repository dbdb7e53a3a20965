/* The function graph's register test (GraphRegisterTests): a probe whose
 * body is a bare `ret` behind its entry site, so whatever comes back from
 * lt_fix_call_with_regs (Tests/Fixtures/trampolines/regs_harness.S, linked
 * in) went through the graph's entry and its return trampoline and nothing
 * else; and a host that calls the probe from inside a traced frame. */
__attribute__((naked, used)) void g_regs_probe(void) { __asm__("ret"); }

/* Calls fn(in, out) through the register harness, one frame deeper. */
void lt_fix_call_with_regs(const void *fn, void *in, void *out);
__attribute__((noinline, used)) void g_regs_host(const void *fn, void *in, void *out) {
    lt_fix_call_with_regs(fn, in, out);
    __asm__ volatile("");
}
