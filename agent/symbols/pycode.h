/* pycode: a CPython code object read out of another process (or any memory image) through a
 * caller's bounded read callback: qualified name, name, file, first line and line table, every
 * length capped and every object's layout (and, when the caller knows the type objects'
 * addresses, its type) checked, so garbage pointers give an error, never a crash or a huge
 * read. Uses pyoffsets for the layout and pyline for lines. No state; thread-safe if read is. */
#ifndef EMBER_PYCODE_H
#define EMBER_PYCODE_H

#include <stddef.h>
#include <stdint.h>

#include "pyline.h"
#include "pyoffsets.h"

/* Copies exactly len bytes at addr (in the target) into buf: 0, or a negative errno (-EFAULT
 * for memory that is not there). Never called with len above PYLINE_MAX_TABLE. */
typedef int (*pycode_read_fn)(void *ctx, uint64_t addr, void *buf, size_t len);

/* Addresses of the target's type objects (PyCode_Type, PyUnicode_Type, PyBytes_Type: symbol
 * value + load bias); 0 = not known, that object's type is then not checked. */
struct pycode_types {
	uint64_t code;
	uint64_t str;
	uint64_t bytes;
};

#define PYCODE_NAME_MAX 1024	/* bytes of UTF-8 in a name or qualname */
#define PYCODE_FILE_MAX 4096	/* bytes of UTF-8 in a file name */

/* One resolved code object. Strings are UTF-8 and NUL-terminated. */
struct pycode_info {
	char qualname[PYCODE_NAME_MAX + 1]; /* co_qualname; co_name on 3.10 */
	char name[PYCODE_NAME_MAX + 1];	    /* co_name */
	char filename[PYCODE_FILE_MAX + 1];
	int32_t firstlineno;
	enum pyline_format line_format;
	uint8_t *linetable;		    /* heap, linetable_len bytes (NULL if 0) */
	size_t linetable_len;
};

/* Reads the code object at code_addr. types may be NULL. 0 (ret filled; release it with
 * pycode_info_fini), the reader's error, -EINVAL (not a code object of this layout: a wrong
 * type, a negative or inconsistent length, a string that is not a compact str, a NUL or an
 * invalid code point in a name), -E2BIG (a name, file or line table over its cap) or -ENOMEM.
 * On error ret holds nothing to release. */
int pycode_resolve(pycode_read_fn read, void *ctx, const struct pyoffsets *off,
		   const struct pycode_types *types, uint64_t code_addr, struct pycode_info *ret);

/* Frees what pycode_resolve() allocated; NULL-safe, and safe twice. */
void pycode_info_fini(struct pycode_info *info);

/* The byte offset of the instruction a frame is at, from the raw frame field at
 * off->frame_instr (3.10: f_lasti, widened from int; 3.11+: the instruction pointer) and the
 * code object's address; -1 (CPython's "not started": the line is then co_firstlineno) when
 * the pointer precedes the code. 0 or -EINVAL (past 1 GiB of bytecode, odd). */
int pycode_instr_offset(const struct pyoffsets *off, uint64_t code_addr, uint64_t instr,
			int32_t *ret_offset);

/* The line at byte_offset (pycode_instr_offset()): pyline_addr2line() over the code's table. */
int pycode_line(const struct pycode_info *info, int32_t byte_offset, int32_t *ret_line);

#endif
