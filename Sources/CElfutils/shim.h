#ifndef LIVETRACE_CELFUTILS_SHIM_H
#define LIVETRACE_CELFUTILS_SHIM_H
#include <gelf.h>
#include <libelf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif
