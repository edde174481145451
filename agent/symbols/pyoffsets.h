/* pyoffsets: pyoffsets_from_elf(), which finds _PyRuntime in an executable or libpython and
 * reads the interpreter's offsets (cpython/pylayout.h: a built-in table chosen by Py_Version
 * for 3.10-3.12, _Py_DebugOffsets for 3.13+) from the file's data, no process needed. Debug
 * builds, free-threaded builds and unknown versions are refused with -ENOTSUP. No state. */
#ifndef EMBER_PYOFFSETS_H
#define EMBER_PYOFFSETS_H

#include <libelf.h>
#include <stddef.h>
#include <stdint.h>

#include "pylayout.h"

/* What pyoffsets_from_elf() found. Addresses are the file's virtual addresses: add the load
 * bias of the mapping for a process. */
struct pyoffsets_elf {
	uint64_t runtime_addr;	/* _PyRuntime */
	uint64_t runtime_size;	/* its st_size */
	uint64_t code_type_addr;	/* PyCode_Type, PyUnicode_Type, PyBytes_Type; 0: no symbol */
	uint64_t str_type_addr;
	uint64_t bytes_type_addr;
	struct pyoffsets off;
};

/* Finds _PyRuntime in e (.dynsym, then .symtab) and the offsets of its interpreter: the version
 * from Py_Version (3.11+), else from the soname or path ("libpython3.10", "python3.10") for
 * 3.10; for 3.13+ the _Py_DebugOffsets at _PyRuntime. path may be NULL. 0; -ENOENT (no
 * _PyRuntime: not a Python ELF); -ENOTSUP (a debug build, free-threaded, an unknown version);
 * -EINVAL (inconsistent data). */
int pyoffsets_from_elf(Elf *e, const char *path, struct pyoffsets_elf *ret);

#endif
