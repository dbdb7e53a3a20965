/* Zydis 4.0 (Debian libzydis-dev): the project's one x86-64 decoder and
 * encoder. Debian ships no pkg-config file for it, so the module map names
 * the library itself. */
#ifndef LIVETRACE_CZYDIS_SHIM_H
#define LIVETRACE_CZYDIS_SHIM_H
#include <Zydis/Zydis.h>
#endif
