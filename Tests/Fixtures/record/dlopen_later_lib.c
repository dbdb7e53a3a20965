/* The library dlopen_later.c loads after start. */
__attribute__((noinline)) int later_answer(int x) { return x + 1; }
