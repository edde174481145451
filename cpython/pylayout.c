/* pylayout: CPython offsets per version (see pylayout.h). The 3.10-3.12 tables are the
 * [V] values of ../shared/PYTHON.md 1.3 (DWARF of the pyenv builds, py-spy's bindgen, a
 * runtime self-check); unit.pyoffsets checks them against each interpreter on the machine. */
#include "pylayout.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void fill_none(struct pyoffsets *o)
{
	memset(o, 0xff, sizeof(*o)); /* every uint32_t field PYOFF_NONE */
}

/* The fields shared by every default x86-64 build from 3.10 on. */
static void fill_common(struct pyoffsets *o)
{
	o->interp_next = 0;
	o->tstate_next = 8;
	o->tstate_interp = 16;
	o->object_type = 8;
	o->unicode_length = 16;
	o->unicode_state = 32;
	o->bytes_size = 16;
	o->bytes_sval = 32;
}

static uint32_t max_end(const uint32_t *fields, size_t n)
{
	uint32_t end = 0;

	for (size_t i = 0; i < n; i++)
		if (fields[i] != PYOFF_NONE && fields[i] + 8 > end)
			end = fields[i] + 8;
	return end;
}

/* Read sizes, and a check that every offset is sane. 0 or -EINVAL. */
static int finish(struct pyoffsets *o)
{
	const uint32_t all[] = {
		o->runtime_interpreters_head, o->runtime_finalizing, o->interp_next,
		o->interp_threads_head, o->interp_id, o->tstate_next, o->tstate_interp,
		o->tstate_frame, o->cframe_current_frame, o->tstate_thread_id,
		o->tstate_native_thread_id, o->tstate_datastack_chunk, o->frame_previous, o->frame_code, o->frame_instr,
		o->frame_is_entry, o->frame_owner, o->frame_func, o->code_firstlineno,
		o->code_filename, o->code_name, o->code_qualname, o->code_linetable, o->code_code_adaptive,
		o->code_code, o->object_type, o->unicode_length, o->unicode_state,
		o->unicode_ascii_data, o->unicode_compact_data, o->bytes_size, o->bytes_sval,
	};
	const uint32_t tstate[] = { o->tstate_next, o->tstate_interp, o->tstate_frame,
				    o->tstate_thread_id, o->tstate_native_thread_id,
				    o->tstate_datastack_chunk };
	const uint32_t frame[] = { o->frame_previous, o->frame_code, o->frame_instr,
				   o->frame_is_entry, o->frame_owner, o->frame_func };
	const uint32_t code[] = { o->code_firstlineno, o->code_filename, o->code_name,
				  o->code_qualname, o->code_linetable, o->code_code };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i] != PYOFF_NONE && all[i] > PYOFF_MAX_OFFSET)
			return -EINVAL;
	/* Fields every walk needs. */
	if (o->runtime_interpreters_head == PYOFF_NONE || o->interp_threads_head == PYOFF_NONE ||
	    o->tstate_frame == PYOFF_NONE || o->frame_previous == PYOFF_NONE ||
	    o->frame_code == PYOFF_NONE || o->frame_instr == PYOFF_NONE ||
	    o->code_filename == PYOFF_NONE || o->code_name == PYOFF_NONE ||
	    o->code_linetable == PYOFF_NONE || o->code_firstlineno == PYOFF_NONE ||
	    (o->code_code_adaptive == PYOFF_NONE) == (o->code_code == PYOFF_NONE))
		return -EINVAL;
	o->tstate_read = max_end(tstate, sizeof(tstate) / sizeof(tstate[0]));
	o->frame_read = max_end(frame, sizeof(frame) / sizeof(frame[0]));
	o->code_read = max_end(code, sizeof(code) / sizeof(code[0]));
	return 0;
}

int pyoffsets_for_version(uint32_t version_hex, struct pyoffsets *ret)
{
	struct pyoffsets o;
	uint32_t minor = (version_hex >> 16) & 0xff;

	if (version_hex >> 24 != 3 || minor < 10 || minor > 12)
		return -ENOTSUP;
	fill_none(&o);
	fill_common(&o);
	o.frame_code_tag_mask = 0;
	o.version_hex = version_hex;
	o.line_format = minor == 10 ? PYLINE_FORMAT_310 : PYLINE_FORMAT_311;
	o.code_filename = minor == 10 ? 104 : 112;
	o.code_name = minor == 10 ? 112 : 120;
	switch (minor) {
	case 10:
		o.instr_kind = PYOFF_INSTR_LASTI;
		o.runtime_interpreters_head = 32;
		o.interp_threads_head = 8;
		o.interp_id = 24;
		o.tstate_frame = 24;
		o.tstate_thread_id = 176;
		o.frame_previous = 24;
		o.frame_code = 32;
		o.frame_instr = 96;
		o.code_firstlineno = 40;
		o.code_linetable = 120;
		o.code_code = 48;
		o.unicode_ascii_data = 48;
		o.unicode_compact_data = 72;
		break;
	case 11:
		o.instr_kind = PYOFF_INSTR_PREV_PTR;
		o.runtime_interpreters_head = 40;
		o.interp_threads_head = 16;
		o.interp_id = 48;
		o.tstate_frame = 56;
		o.cframe_current_frame = 8;
		o.tstate_thread_id = 152;
		o.tstate_native_thread_id = 160;
		o.tstate_datastack_chunk = 296;
		o.frame_code = 32;
		o.frame_previous = 48;
		o.frame_instr = 56;
		o.frame_is_entry = 68;
		o.frame_owner = 69;
		o.frame_func = 0;
		o.code_firstlineno = 72;
		o.code_qualname = 128;
		o.code_linetable = 136;
		o.code_code_adaptive = 184;
		o.unicode_ascii_data = 48;
		o.unicode_compact_data = 72;
		break;
	default: /* 12 */
		o.instr_kind = PYOFF_INSTR_PREV_PTR;
		o.runtime_interpreters_head = 40;
		o.interp_threads_head = 72;
		o.interp_id = 8;
		o.tstate_frame = 56;
		o.cframe_current_frame = 0;
		o.tstate_thread_id = 136;
		o.tstate_native_thread_id = 144;
		o.tstate_datastack_chunk = 232;
		o.frame_code = 0;
		o.frame_previous = 8;
		o.frame_instr = 56;
		o.frame_owner = 70;
		o.frame_func = 16;
		o.code_firstlineno = 68;
		o.code_qualname = 128;
		o.code_linetable = 136;
		o.code_code_adaptive = 192;
		o.unicode_ascii_data = 40;
		o.unicode_compact_data = 56;
		break;
	}
	if (finish(&o))
		return -EINVAL;
	*ret = o;
	return 0;
}

/* Where each _Py_DebugOffsets sub-struct starts, per minor (CPython's pycore_runtime.h for
 * 3.13, pycore_debug_offsets.h for 3.14; PYTHON.md 2). Inside each sub-struct the first
 * uint64_t is the struct's size and the fields read here keep their order in both. */
struct debug_layout {
	uint32_t minor;
	uint32_t len;		/* bytes of _Py_DebugOffsets */
	uint32_t runtime, interp, tstate, frame, code, pyobject, bytes, unicode;
};

static const struct debug_layout debug_layouts[] = {
	{ 13, 584, 24, 48, 152, 224, 272, 352, 512, 536 },
	/* 3.14 from py-spy's bindgen of 3.14.0 (v3_14_0.rs); no 3.14 binary on the machines
	 * that checked it, so finish() and the fixed-value checks below guard a misread. */
	{ 14, 760, 24, 48, 176, 248, 312, 400, 592, 616 },
};

static int get_u64(const uint8_t *buf, size_t len, uint32_t off, uint64_t *ret)
{
	if (off > len || len - off < 8)
		return -EINVAL;
	memcpy(ret, buf + off, 8);
	return 0;
}

/* An offset field of sub-struct base, index i (0 = its size), that must lie inside the struct
 * whose size is at index 0. */
static int get_field(const uint8_t *buf, size_t len, uint32_t base, uint32_t i, uint32_t *ret)
{
	uint64_t size, v;

	if (get_u64(buf, len, base, &size) || get_u64(buf, len, base + 8 * i, &v))
		return -EINVAL;
	if (size == 0 || size > (1u << 20) || v >= size || v > PYOFF_MAX_OFFSET)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

int pyoffsets_from_debug(const uint8_t *buf, size_t len, uint32_t version_hex,
			 struct pyoffsets *ret)
{
	const struct debug_layout *l = NULL;
	struct pyoffsets o;
	uint64_t version, free_threaded, ascii_size;
	uint32_t minor, ob_size;
	int err = 0;

	if (!buf || len < 24)
		return -EINVAL;
	if (memcmp(buf, "xdebugpy", 8))
		return -ENOENT;
	memcpy(&version, buf + 8, 8);
	memcpy(&free_threaded, buf + 16, 8);
	if (version >> 32 || version >> 24 != 3 || (version_hex && version != version_hex))
		return -ENOTSUP;
	if (free_threaded)
		return -ENOTSUP;
	minor = (version >> 16) & 0xff;
	for (size_t i = 0; i < sizeof(debug_layouts) / sizeof(debug_layouts[0]); i++)
		if (debug_layouts[i].minor == minor)
			l = &debug_layouts[i];
	if (!l)
		return -ENOTSUP;
	if (len < l->len)
		return -EINVAL;

	fill_none(&o);
	o.version_hex = (uint32_t)version;
	o.line_format = PYLINE_FORMAT_311;
	o.instr_kind = PYOFF_INSTR_PTR;
	/* 3.14 GIL builds tag borrowed/immortal stack refs in bit 0 (CPython #127705); pystack
	 * masks two bits. */
	o.frame_code_tag_mask = minor >= 14 ? 3 : 0;
	err |= get_field(buf, len, l->runtime, 1, &o.runtime_finalizing);
	err |= get_field(buf, len, l->runtime, 2, &o.runtime_interpreters_head);
	err |= get_field(buf, len, l->interp, 1, &o.interp_id);
	err |= get_field(buf, len, l->interp, 2, &o.interp_next);
	err |= get_field(buf, len, l->interp, 3, &o.interp_threads_head);
	err |= get_field(buf, len, l->tstate, 2, &o.tstate_next);
	err |= get_field(buf, len, l->tstate, 3, &o.tstate_interp);
	err |= get_field(buf, len, l->tstate, 4, &o.tstate_frame);
	err |= get_field(buf, len, l->tstate, 5, &o.tstate_thread_id);
	err |= get_field(buf, len, l->tstate, 6, &o.tstate_native_thread_id);
	err |= get_field(buf, len, l->tstate, 7, &o.tstate_datastack_chunk);
	err |= get_field(buf, len, l->frame, 1, &o.frame_previous);
	err |= get_field(buf, len, l->frame, 2, &o.frame_code);
	err |= get_field(buf, len, l->frame, 3, &o.frame_instr);
	err |= get_field(buf, len, l->frame, 5, &o.frame_owner);
	o.frame_func = 16; /* f_funcobj, right after previous: not in the debug offsets */
	err |= get_field(buf, len, l->code, 1, &o.code_filename);
	err |= get_field(buf, len, l->code, 2, &o.code_name);
	err |= get_field(buf, len, l->code, 3, &o.code_qualname);
	err |= get_field(buf, len, l->code, 4, &o.code_linetable);
	err |= get_field(buf, len, l->code, 5, &o.code_firstlineno);
	/* co_code_adaptive is where the inline code starts: it may equal the struct's size. */
	{
		uint64_t code_size, adaptive;

		if (get_u64(buf, len, l->code, &code_size) ||
		    get_u64(buf, len, l->code + 8 * 9, &adaptive) || adaptive > code_size ||
		    adaptive > PYOFF_MAX_OFFSET)
			err = -EINVAL;
		else
			o.code_code_adaptive = (uint32_t)adaptive;
	}
	err |= get_field(buf, len, l->pyobject, 1, &o.object_type);
	err |= get_field(buf, len, l->bytes, 1, &ob_size);
	err |= get_field(buf, len, l->bytes, 2, &o.bytes_sval);
	o.bytes_size = ob_size;
	err |= get_field(buf, len, l->unicode, 1, &o.unicode_state);
	err |= get_field(buf, len, l->unicode, 2, &o.unicode_length);
	if (get_u64(buf, len, l->unicode + 24, &ascii_size) || ascii_size > 1024)
		err = -EINVAL;
	if (err)
		return -EINVAL;
	/* PyCompactUnicodeObject = PyASCIIObject + utf8_length + utf8 (3.12+). */
	o.unicode_ascii_data = (uint32_t)ascii_size;
	o.unicode_compact_data = o.unicode_ascii_data + 16;
	/* Values the object header fixes in every GIL build: a decoder reading the wrong words
	 * (a layout that moved) fails here instead of producing plausible garbage. */
	if (o.object_type != 8 || o.bytes_size != 16 || o.bytes_sval != 32 ||
	    o.unicode_length != 16 || o.unicode_state != 32 || o.unicode_ascii_data != 40 ||
	    o.tstate_next != 8 || o.tstate_interp != 16)
		return -EINVAL;
	if (finish(&o))
		return -EINVAL;
	*ret = o;
	return 0;
}

/* ---- The walk's description ---- */

/* off fits a read of size bytes with a field of width bytes, as a __u16. */
static bool fits(uint32_t off, uint32_t width, uint32_t size, __u16 *ret)
{
	if (off == PYOFF_NONE || off > size || size - off < width)
		return false;
	*ret = (__u16)off;
	return true;
}

int pylayout_describe(const struct pyoffsets *o, uint64_t runtime, struct ember_py_proc *ret)
{
	unsigned minor = (o->version_hex >> 16) & 0xff;
	struct ember_py_proc p = {
		.interp_head = runtime + o->runtime_interpreters_head,
		.version_hex = o->version_hex,
		.instr_kind = o->instr_kind == PYOFF_INSTR_LASTI ? EMBER_PY_INSTR_LASTI : EMBER_PY_INSTR_PTR,
		.entry_kind = minor == 10 ? EMBER_PY_ENTRY_NONE : minor == 11 ? EMBER_PY_ENTRY_FLAG
			    : minor <= 13 ? EMBER_PY_ENTRY_OWNER : EMBER_PY_ENTRY_OWNER_GE,
		.code_tag_mask = (__u8)o->frame_code_tag_mask,
		.cframe_current_frame = EMBER_PY_NO_OFFSET,
		.code_qualname = EMBER_PY_NO_OFFSET,
		.frame_func = EMBER_PY_NO_OFFSET,
		.tstate_datastack_chunk = EMBER_PY_NO_OFFSET,
	};
	/* The thread-state search reads single fields at any offset below this. */
	const uint32_t anywhere = 65535;

	if (!runtime || o->frame_code_tag_mask > 0xff)
		return -ENOTSUP;
	if (!fits(o->interp_next, 8, anywhere, &p.interp_next) ||
	    !fits(o->interp_threads_head, 8, anywhere, &p.interp_threads_head) ||
	    !fits(o->tstate_next, 8, anywhere, &p.tstate_next) ||
	    !fits(o->tstate_thread_id, 8, EMBER_PY_TSTATE_READ, &p.tstate_thread_id) ||
	    !fits(o->tstate_frame, 8, EMBER_PY_TSTATE_READ, &p.tstate_frame) ||
	    !fits(o->frame_previous, 8, 80, &p.frame_previous) ||
	    !fits(o->frame_code, 8, 80, &p.frame_code) ||
	    !fits(o->frame_instr, p.instr_kind == EMBER_PY_INSTR_LASTI ? 4 : 8,
		  p.instr_kind == EMBER_PY_INSTR_LASTI ? EMBER_PY_FRAME_READ : 80, &p.frame_instr) ||
	    !fits(o->code_firstlineno, 4, EMBER_PY_CODE_READ, &p.code_firstlineno) ||
	    !fits(o->code_filename, 8, EMBER_PY_CODE_READ, &p.code_filename) ||
	    !fits(o->code_name, 8, EMBER_PY_CODE_READ, &p.code_name) ||
	    !fits(o->code_linetable, 8, EMBER_PY_CODE_READ, &p.code_linetable))
		return -ENOTSUP;
	if (o->code_qualname != PYOFF_NONE &&
	    !fits(o->code_qualname, 8, EMBER_PY_CODE_READ, &p.code_qualname))
		return -ENOTSUP;
	if (o->cframe_current_frame != PYOFF_NONE &&
	    !fits(o->cframe_current_frame, 8, anywhere, &p.cframe_current_frame))
		return -ENOTSUP;
	if (o->tstate_datastack_chunk != PYOFF_NONE &&
	    !fits(o->tstate_datastack_chunk, 8, EMBER_PY_TSTATE_READ, &p.tstate_datastack_chunk))
		return -ENOTSUP;
	if (o->frame_func != PYOFF_NONE && !fits(o->frame_func, 8, 80, &p.frame_func))
		return -ENOTSUP;
	if (p.entry_kind == EMBER_PY_ENTRY_FLAG && !fits(o->frame_is_entry, 1, 80, &p.frame_entry))
		return -ENOTSUP;
	if (p.entry_kind >= EMBER_PY_ENTRY_OWNER && !fits(o->frame_owner, 1, 80, &p.frame_entry))
		return -ENOTSUP;
	*ret = p;
	return 0;
}
