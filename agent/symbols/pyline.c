/* pyline: CPython line tables (see pyline.h). The walks follow CPython's own
 * PyLineTable_NextAddressRange (Objects/codeobject.c, 3.10 and 3.11+), with bounds added. */
#include "pyline.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>

int pyline_format_for_version(uint32_t version_hex, enum pyline_format *ret_format)
{
	uint32_t major = version_hex >> 24, minor = (version_hex >> 16) & 0xff;

	if (major != 3 || minor < 10 || minor > 14)
		return -ENOTSUP;
	*ret_format = minor == 10 ? PYLINE_FORMAT_310 : PYLINE_FORMAT_311;
	return 0;
}

int pyline_iter_init(struct pyline_iter *it, enum pyline_format format, const uint8_t *tab,
		     size_t len, int32_t firstlineno)
{
	if ((format != PYLINE_FORMAT_310 && format != PYLINE_FORMAT_311) || (!tab && len))
		return -EINVAL;
	if (len > PYLINE_MAX_TABLE)
		return -E2BIG;
	it->tab = tab;
	it->len = len;
	it->pos = 0;
	it->format = format;
	it->line = firstlineno;
	it->addr = 0;
	return 0;
}

/* A 3.11+ varint at tab[*pos]: 6-bit chunks, least significant first, bit 6 = more. At most
 * 6 chunks (36 bits, cut to 32 as CPython's unsigned int does): more is not a real table. */
static int read_varint(const struct pyline_iter *it, size_t *pos, uint32_t *ret)
{
	uint64_t val = 0;
	unsigned int shift = 0;

	for (int i = 0; i < 6; i++) {
		uint8_t b;

		if (*pos >= it->len)
			return -EINVAL;
		b = it->tab[(*pos)++];
		val |= (uint64_t)(b & 63) << shift;
		shift += 6;
		if (!(b & 64)) {
			*ret = (uint32_t)val;
			return 0;
		}
	}
	return -EINVAL;
}

static int emit(struct pyline_iter *it, uint32_t width, bool no_line, struct pyline_range *ret)
{
	if (it->line < INT32_MIN || it->line > INT32_MAX || width > UINT32_MAX - it->addr)
		return -EINVAL;
	ret->start = it->addr;
	ret->end = it->addr + width;
	ret->line = no_line ? PYLINE_NONE : (int32_t)it->line;
	it->addr = ret->end;
	return 1;
}

static int next_310(struct pyline_iter *it, struct pyline_range *ret)
{
	while (it->pos + 2 <= it->len) {
		uint8_t sdelta = it->tab[it->pos];
		int8_t ldelta = (int8_t)it->tab[it->pos + 1];
		bool no_line = ldelta == -128;

		it->pos += 2;
		if (!no_line)
			it->line += ldelta;
		if (sdelta) /* empty ranges only move the line */
			return emit(it, sdelta, no_line, ret);
	}
	/* CPython would read one byte past an odd-length table. */
	return it->pos < it->len ? -EINVAL : 0;
}

static int next_311(struct pyline_iter *it, struct pyline_range *ret)
{
	size_t pos = it->pos;
	uint8_t first, code;
	int64_t delta = 0;
	uint32_t u;

	if (pos >= it->len)
		return 0;
	first = it->tab[pos++];
	if (!(first & 0x80)) /* only the first byte can be misplaced: later ones are skipped to */
		return -EINVAL;
	code = (first >> 3) & 15;
	switch (code) {
	case 13: /* PY_CODE_LOCATION_INFO_NO_COLUMNS */
	case 14: /* PY_CODE_LOCATION_INFO_LONG */
		if (read_varint(it, &pos, &u))
			return -EINVAL;
		delta = (u & 1) ? -(int64_t)(u >> 1) : (int64_t)(u >> 1);
		break;
	case 11: /* PY_CODE_LOCATION_INFO_ONE_LINE1 */
		delta = 1;
		break;
	case 12: /* PY_CODE_LOCATION_INFO_ONE_LINE2 */
		delta = 2;
		break;
	default: /* short forms 0-9, ONE_LINE0 (10), NONE (15): same line */
		break;
	}
	/* As CPython: skip the rest of the entry (columns...) up to the next byte with bit 7. */
	pos = it->pos + 1;
	while (pos < it->len && !(it->tab[pos] & 0x80))
		pos++;
	it->pos = pos;
	it->line += delta;
	return emit(it, 2u * ((first & 7u) + 1), code == 15, ret);
}

int pyline_iter_next(struct pyline_iter *it, struct pyline_range *ret)
{
	return it->format == PYLINE_FORMAT_310 ? next_310(it, ret) : next_311(it, ret);
}

int pyline_addr2line(enum pyline_format format, const uint8_t *tab, size_t len,
		     int32_t firstlineno, int32_t byte_offset, int32_t *ret_line)
{
	struct pyline_iter it;
	struct pyline_range r;
	int err;

	err = pyline_iter_init(&it, format, tab, len, firstlineno);
	if (err)
		return err;
	if (byte_offset < 0) {
		*ret_line = firstlineno;
		return 0;
	}
	while ((err = pyline_iter_next(&it, &r)) == 1) {
		if ((uint32_t)byte_offset < r.end) {
			*ret_line = r.line;
			return 0;
		}
	}
	if (err)
		return err;
	*ret_line = PYLINE_NONE;
	return 0;
}
