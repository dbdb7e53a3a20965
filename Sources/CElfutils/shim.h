#ifndef LIVETRACE_CELFUTILS_SHIM_H
#define LIVETRACE_CELFUTILS_SHIM_H
/* libdw's types, for DWARF line tables only (SourceLines.swift, which loads
 * libdw with dlopen). ELF structures are read by ElfObject (LiveTraceSites),
 * the project's one ELF reader. */
#include <elfutils/libdw.h>
#endif
