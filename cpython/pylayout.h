/* pylayout: where a CPython interpreter keeps what a frame walk reads, per version, shared by
 * the agent (which reads other processes) and libember_cupti.so (which reads its own):
 * built-in tables for 3.10, 3.11 and 3.12 (chosen by Py_Version), the interpreter's own
 * _Py_DebugOffsets for 3.13 and 3.14 (the decoder chosen by its version field), and the
 * description a frame walker follows (struct ember_py_proc of bpf/ember.h: the BPF walk and
 * the in-process capture at a CUDA launch read frames by the same rules). Debug builds,
 * free-threaded builds and versions without a table or decoder are refused with -ENOTSUP,
 * never guessed. x86-64 only. Pure functions, no state, no I/O. */
#ifndef EMBER_PYLAYOUT_H
#define EMBER_PYLAYOUT_H

#include <stddef.h>
#include <linux/types.h>
#include <stdint.h>

#include "ember.h"

/* Line table formats (agent/symbols/pyline.h decodes them). */
enum pyline_format {
	PYLINE_FORMAT_310 = 1, /* 3.10: (sdelta u8, ldelta s8) pairs, -128 = no line */
	PYLINE_FORMAT_311 = 2, /* 3.11-3.14: location entries, code 15 = no location */
};

/* An offset the version does not have. */
#define PYOFF_NONE UINT32_MAX

/* How a frame says which instruction it is at. */
enum pyoffsets_instr {
	PYOFF_INSTR_LASTI = 1,	  /* 3.10: int f_lasti, in code units (byte offset 2x) */
	PYOFF_INSTR_PREV_PTR = 2, /* 3.11/3.12: prev_instr, the last started code unit */
	PYOFF_INSTR_PTR = 3,	  /* 3.13+: instr_ptr, the current or next instruction */
};

/* Byte offsets inside each struct (PYOFF_NONE where absent) and the sizes to read. */
struct pyoffsets {
	uint32_t version_hex;		/* PY_VERSION_HEX; 3.10 (no Py_Version): 0x030a0000 */
	enum pyline_format line_format;
	enum pyoffsets_instr instr_kind;

	/* _PyRuntimeState */
	uint32_t runtime_interpreters_head;
	uint32_t runtime_finalizing;	/* 3.13+ only (debug offsets) */
	/* PyInterpreterState */
	uint32_t interp_next;
	uint32_t interp_threads_head;	/* 3.10 tstate_head */
	uint32_t interp_id;
	/* PyThreadState */
	uint32_t tstate_next;
	uint32_t tstate_interp;
	uint32_t tstate_frame;		/* 3.10 frame, 3.11/12 cframe, 3.13+ current_frame */
	uint32_t cframe_current_frame;	/* 3.11/3.12: in the _PyCFrame at tstate_frame */
	uint32_t tstate_thread_id;	/* pthread_t */
	uint32_t tstate_native_thread_id; /* kernel TID, 3.11+ */
	uint32_t tstate_datastack_chunk;  /* 3.11+: the _PyStackChunk the frames are pushed on */
	/* Frame: PyFrameObject on 3.10, _PyInterpreterFrame on 3.11+ */
	uint32_t frame_previous;	/* f_back / previous */
	uint32_t frame_code;		/* f_code / f_executable (3.14: tagged _PyStackRef) */
	uint32_t frame_code_tag_mask;	/* low bits to clear in frame_code: 3 on 3.14, else 0 */
	uint32_t frame_instr;		/* see instr_kind */
	uint32_t frame_is_entry;	/* 3.11: bool */
	uint32_t frame_owner;		/* 3.11+: char */
	uint32_t frame_func;		/* 3.11 f_func, 3.12+ f_funcobj (3.14: tagged like the code);
					 * not in _Py_DebugOffsets: 16 in 3.13.0 and 3.14.0 */
	/* PyCodeObject */
	uint32_t code_firstlineno;	/* int */
	uint32_t code_filename;
	uint32_t code_name;
	uint32_t code_qualname;		/* 3.11+ */
	uint32_t code_linetable;	/* bytes */
	uint32_t code_code_adaptive;	/* 3.11+: first code unit, inline */
	uint32_t code_code;		/* 3.10: co_code, a bytes object */
	/* Objects */
	uint32_t object_type;		/* ob_type */
	uint32_t unicode_length;	/* Py_ssize_t, in code points */
	uint32_t unicode_state;		/* bits: interned 0-1, kind 2-4, compact 5, ascii 6 */
	uint32_t unicode_ascii_data;	/* sizeof(PyASCIIObject): 48 (3.10/3.11), 40 (3.12+) */
	uint32_t unicode_compact_data;	/* sizeof(PyCompactUnicodeObject): 72 / 56 */
	uint32_t bytes_size;		/* ob_size */
	uint32_t bytes_sval;
	/* Bytes that cover every field above, per struct: what one read should copy. */
	uint32_t tstate_read;
	uint32_t frame_read;
	uint32_t code_read;
};

/* Largest struct read accepted from a table or debug offsets (3.13 PyInterpreterState fields
 * sit near 7.3 KiB; the others are far smaller). */
#define PYOFF_MAX_OFFSET (64u * 1024)

/* The built-in table of a 3.10, 3.11 or 3.12 default build. 0 or -ENOTSUP. */
int pyoffsets_for_version(uint32_t version_hex, struct pyoffsets *ret);

/* Decodes a _Py_DebugOffsets image (the first len bytes of _PyRuntime, 3.13+). 0; -ENOENT (no
 * "xdebugpy" cookie); -ENOTSUP (free-threaded, a version without a decoder, or version_hex
 * given non-zero and different); -EINVAL (too short, a field past its struct's size, a size
 * out of bounds). *ret is written only on success. */
int pyoffsets_from_debug(const uint8_t *buf, size_t len, uint32_t version_hex,
			 struct pyoffsets *ret);

/* The walk's description of an interpreter whose _PyRuntime is at runtime (an address in the
 * process that is walked). 0, or -ENOTSUP when an offset does not fit the walk's fixed reads
 * (never used then: the walk would read wrong fields). */
int pylayout_describe(const struct pyoffsets *o, uint64_t runtime, struct ember_py_proc *ret);

#endif
