/* pycode: CPython code objects through a bounded reader (see pycode.h). */
#include "pycode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Largest object header read: every field the offsets name lies below this. */
#define HEADER_MAX 512

static int read_header(pycode_read_fn read, void *ctx, uint64_t addr, uint32_t len,
		       uint8_t *buf)
{
	if (!addr || len > HEADER_MAX || addr > UINT64_MAX - len)
		return -EINVAL;
	return read(ctx, addr, buf, len);
}

static uint64_t u64_at(const uint8_t *buf, uint32_t off)
{
	uint64_t v;

	memcpy(&v, buf + off, 8);
	return v;
}

/* A live object of type want (0: any type). A live object's reference count is positive and
 * far below 2^40 (3.12's immortal objects have 2^32 - 1); a block pymalloc has freed holds its
 * free-list pointer (or 0) there instead. That is how an object freed under a sample is told
 * from a live one while its other fields still look right (an interpreter exiting frees code
 * objects and their strings, and reuses the strings' memory). */
static int check_type(const uint8_t *hdr, const struct pyoffsets *off, uint64_t want)
{
	uint64_t refcnt = u64_at(hdr, 0);

	if (refcnt == 0 || refcnt >= (1ULL << 40))
		return -EINVAL;
	return want && u64_at(hdr, off->object_type) != want ? -EINVAL : 0;
}

/* Appends code point c as UTF-8 to out (cap bytes, NUL not counted). */
static int put_utf8(char *out, size_t cap, size_t *n, uint32_t c)
{
	uint8_t b[4];
	size_t k;

	if (c == 0 || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return -EINVAL; /* NUL would cut the name; lone surrogates are not UTF-8 */
	if (c < 0x80) {
		b[0] = (uint8_t)c;
		k = 1;
	} else if (c < 0x800) {
		b[0] = (uint8_t)(0xc0 | c >> 6);
		b[1] = (uint8_t)(0x80 | (c & 63));
		k = 2;
	} else if (c < 0x10000) {
		b[0] = (uint8_t)(0xe0 | c >> 12);
		b[1] = (uint8_t)(0x80 | ((c >> 6) & 63));
		b[2] = (uint8_t)(0x80 | (c & 63));
		k = 3;
	} else {
		b[0] = (uint8_t)(0xf0 | c >> 18);
		b[1] = (uint8_t)(0x80 | ((c >> 12) & 63));
		b[2] = (uint8_t)(0x80 | ((c >> 6) & 63));
		b[3] = (uint8_t)(0x80 | (c & 63));
		k = 4;
	}
	if (cap - *n < k)
		return -E2BIG;
	memcpy(out + *n, b, k);
	*n += k;
	return 0;
}

/* A compact str at addr as UTF-8 into out (cap + 1 bytes). */
static int read_str(pycode_read_fn read, void *ctx, const struct pyoffsets *off,
		    const struct pycode_types *types, uint64_t addr, char *out, size_t cap)
{
	uint8_t hdr[HEADER_MAX], *data = NULL;
	uint32_t state, kind, data_off;
	int64_t length;
	size_t n = 0, bytes;
	bool ascii;
	int err;

	err = read_header(read, ctx, addr, off->unicode_compact_data, hdr);
	if (err)
		return err;
	if (check_type(hdr, off, types ? types->str : 0))
		return -EINVAL;
	memcpy(&length, hdr + off->unicode_length, 8);
	memcpy(&state, hdr + off->unicode_state, 4);
	kind = (state >> 2) & 7;
	ascii = (state >> 6) & 1;
	if (!((state >> 5) & 1) || (kind != 1 && kind != 2 && kind != 4) || (ascii && kind != 1) ||
	    length < 0)
		return -EINVAL;
	if ((uint64_t)length > cap) /* every code point takes at least one byte of UTF-8 */
		return -E2BIG;
	data_off = ascii ? off->unicode_ascii_data : off->unicode_compact_data;
	bytes = (size_t)length * kind;
	if (bytes) {
		if (addr > UINT64_MAX - data_off - bytes)
			return -EINVAL;
		data = malloc(bytes);
		if (!data)
			return -ENOMEM;
		err = read(ctx, addr + data_off, data, bytes);
	}
	for (size_t i = 0; !err && i < (size_t)length; i++) {
		uint32_t c;

		if (kind == 1) {
			c = data[i];
			if (ascii && c >= 0x80)
				err = -EINVAL;
		} else if (kind == 2) {
			uint16_t v;

			memcpy(&v, data + 2 * i, 2);
			c = v;
		} else {
			memcpy(&c, data + 4 * i, 4);
		}
		if (!err)
			err = put_utf8(out, cap, &n, c);
	}
	free(data);
	if (err)
		return err;
	out[n] = '\0';
	return 0;
}

static int read_bytes(pycode_read_fn read, void *ctx, const struct pyoffsets *off,
		      const struct pycode_types *types, uint64_t addr, uint8_t **ret,
		      size_t *ret_len)
{
	uint8_t hdr[HEADER_MAX], *buf;
	int64_t size;
	int err;

	err = read_header(read, ctx, addr, off->bytes_sval, hdr);
	if (err)
		return err;
	if (check_type(hdr, off, types ? types->bytes : 0))
		return -EINVAL;
	memcpy(&size, hdr + off->bytes_size, 8);
	if (size < 0)
		return -EINVAL;
	if (size > PYLINE_MAX_TABLE)
		return -E2BIG;
	*ret = NULL;
	*ret_len = 0;
	if (!size)
		return 0;
	if (addr > UINT64_MAX - off->bytes_sval - (uint64_t)size)
		return -EINVAL;
	buf = malloc((size_t)size);
	if (!buf)
		return -ENOMEM;
	err = read(ctx, addr + off->bytes_sval, buf, (size_t)size);
	if (err) {
		free(buf);
		return err;
	}
	*ret = buf;
	*ret_len = (size_t)size;
	return 0;
}

int pycode_resolve(pycode_read_fn read, void *ctx, const struct pyoffsets *off,
		   const struct pycode_types *types, uint64_t code_addr, struct pycode_info *ret)
{
	uint8_t hdr[HEADER_MAX];
	uint64_t filename, name, qualname, linetable;
	uint32_t hdr_len;
	int32_t first;
	int err;

	if (!read || !off || !ret)
		return -EINVAL;
	ret->linetable = NULL;
	ret->linetable_len = 0;
	hdr_len = off->code_read;
	if (off->object_type + 8 > hdr_len)
		hdr_len = off->object_type + 8;
	err = read_header(read, ctx, code_addr, hdr_len, hdr);
	if (err)
		return err;
	if (check_type(hdr, off, types ? types->code : 0))
		return -EINVAL;
	memcpy(&first, hdr + off->code_firstlineno, 4);
	filename = u64_at(hdr, off->code_filename);
	name = u64_at(hdr, off->code_name);
	qualname = off->code_qualname != PYOFF_NONE ? u64_at(hdr, off->code_qualname) : name;
	linetable = u64_at(hdr, off->code_linetable);
	if (first < 0)
		return -EINVAL;
	err = read_str(read, ctx, off, types, name, ret->name, PYCODE_NAME_MAX);
	if (!err)
		err = read_str(read, ctx, off, types, qualname, ret->qualname, PYCODE_NAME_MAX);
	if (!err)
		err = read_str(read, ctx, off, types, filename, ret->filename, PYCODE_FILE_MAX);
	if (!err)
		err = read_bytes(read, ctx, off, types, linetable, &ret->linetable,
				 &ret->linetable_len);
	if (err)
		return err;
	ret->firstlineno = first;
	ret->line_format = off->line_format;
	return 0;
}

void pycode_info_fini(struct pycode_info *info)
{
	if (!info)
		return;
	free(info->linetable);
	info->linetable = NULL;
	info->linetable_len = 0;
}

int pycode_instr_offset(const struct pyoffsets *off, uint64_t code_addr, uint64_t instr,
			int32_t *ret_offset)
{
	uint64_t start, diff;

	if (off->instr_kind == PYOFF_INSTR_LASTI) {
		int32_t lasti = (int32_t)(uint32_t)instr;

		if (lasti < -1 || lasti >= (1 << 29))
			return -EINVAL;
		*ret_offset = lasti < 0 ? -1 : 2 * lasti;
		return 0;
	}
	if (off->code_code_adaptive == PYOFF_NONE || code_addr > UINT64_MAX - off->code_code_adaptive)
		return -EINVAL;
	start = code_addr + off->code_code_adaptive;
	if (instr < start) {
		/* 3.11/3.12 fresh frames point one code unit before the first */
		if (start - instr == 2) {
			*ret_offset = -1;
			return 0;
		}
		return -EINVAL;
	}
	diff = instr - start;
	if (diff >= (1u << 30) || (diff & 1))
		return -EINVAL;
	*ret_offset = (int32_t)diff;
	return 0;
}

int pycode_line(const struct pycode_info *info, int32_t byte_offset, int32_t *ret_line)
{
	return pyline_addr2line(info->line_format, info->linetable, info->linetable_len,
				info->firstlineno, byte_offset, ret_line);
}
