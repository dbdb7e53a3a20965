#ifndef LIVETRACE_CELFUTILS_SHIM_H
#define LIVETRACE_CELFUTILS_SHIM_H
/* libdw, for DWARF line tables only (SourceLines.swift). ELF structures are
 * read by ElfObject (LiveTraceSites), the project's one ELF reader. */
#include <elfutils/libdw.h>
#endif
