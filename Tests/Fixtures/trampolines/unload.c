/* A library the unload tests dlopen, trace and dlclose (UnloadTests.swift).
 * Built with clang -O2 -fpatchable-function-entry=5 -shared -fPIC. */
__attribute__((noinline, used)) int lt_unload_target(int x) {
    __asm__ volatile("");
    return x * 3 + 1;
}
