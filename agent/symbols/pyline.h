/* pyline: CPython line tables, decoded from the bytes of a code object's co_linetable: the
 * 3.10 format (PEP 626 byte pairs, Objects/lnotab_notes.txt) and the 3.11+ location table
 * (Objects/locations.md; unchanged in 3.12, 3.13 and 3.14). Pure functions over caller-owned
 * bytes that may come from a hostile process: every read is bounded by len, every walk ends
 * after at most len steps, and a malformed table is an error, never a read past its end.
 * Offsets are in bytes of bytecode, as PyCode_Addr2Line takes them: 2 * f_lasti on 3.10,
 * 2 * the code-unit index (instr_ptr - co_code_adaptive) on 3.11+. Thread-safe, no state. */
#ifndef EMBER_PYLINE_H
#define EMBER_PYLINE_H

#include <stddef.h>
#include <stdint.h>

#include "pylayout.h" /* enum pyline_format */


/* The line of an instruction without one (CPython's -1). */
#define PYLINE_NONE (-1)

/* Largest table accepted, bytes. Most are under 1 KiB, but 3.10's html/entities.py module code
 * has 84 KiB (3.11-3.13: 37-44 KiB), so 64 KiB would be too tight; the remote reader caps here. */
#define PYLINE_MAX_TABLE (256u * 1024)

/* The format of a CPython version given as PY_VERSION_HEX (0x030b07f0...): 0, or -ENOTSUP
 * before 3.10 and from 3.15 on (not checked against a real build yet). */
int pyline_format_for_version(uint32_t version_hex, enum pyline_format *ret_format);

/* One address range of a table: the bytecode bytes [start, end) have line `line`
 * (PYLINE_NONE for "no line"). */
struct pyline_range {
	uint32_t start;
	uint32_t end;
	int32_t line;
};

/* A walk over a table's ranges in address order; zero-width ranges are skipped (their line
 * delta still counts), as CPython's PyLineTable_NextAddressRange does. Embedded, no heap. */
struct pyline_iter {
	const uint8_t *tab;
	size_t len;
	size_t pos;		/* next entry's first byte */
	enum pyline_format format;
	int64_t line;		/* the running line */
	uint32_t addr;		/* end of the last range, bytes */
};

/* Starts a walk. 0, -EINVAL (unknown format, NULL tab with len > 0) or -E2BIG
 * (len > PYLINE_MAX_TABLE). */
int pyline_iter_init(struct pyline_iter *it, enum pyline_format format, const uint8_t *tab,
		     size_t len, int32_t firstlineno);

/* The next non-empty range in *ret. 1 (a range), 0 (end of table) or -EINVAL (a truncated
 * varint, a line outside int32, an address past 4 GiB); *ret is written only for 1. */
int pyline_iter_next(struct pyline_iter *it, struct pyline_range *ret);

/* The line of the instruction at byte_offset, like PyCode_Addr2Line: firstlineno for a
 * negative offset (3.11+ fresh frame: index -1), PYLINE_NONE for an instruction without a line
 * or past the table. 0 (*ret_line written), -EINVAL or -E2BIG (see above). O(len). */
int pyline_addr2line(enum pyline_format format, const uint8_t *tab, size_t len,
		     int32_t firstlineno, int32_t byte_offset, int32_t *ret_line);

/* The function's first line for pprof's start_line: co_firstlineno itself (all versions);
 * 0 (CPython's own helper frames, e.g. 3.13 _Py_InitCleanup) and negative values mean
 * "unknown" and give 0. */
static inline int64_t pyline_start_line(int32_t firstlineno)
{
	return firstlineno > 0 ? firstlineno : 0;
}

#endif
