/* x86insn: see x86insn.h. Encodings from the Intel SDM, vol. 2. */
#include "x86insn.h"

#include <errno.h>
#include <string.h>

bool x86insn_has_fp_prologue(const uint8_t *code, size_t len)
{
	static const uint8_t push_mov[] = { 0x55, 0x48, 0x89, 0xe5 };

	if (len > X86INSN_PROLOGUE_WINDOW)
		len = X86INSN_PROLOGUE_WINDOW;
	for (size_t i = 0; i + sizeof(push_mov) <= len; i++)
		if (!memcmp(code + i, push_mov, sizeof(push_mov)))
			return true;
	return false;
}

/* Any REX prefix (0x40-0x4f): with or without W (or extended registers), test and cmp still
 * change nothing but flags. */
static bool is_rex(uint8_t b)
{
	return (b & 0xf0) == 0x40;
}

int x86insn_uprobe_offset(const uint8_t *code, size_t len, size_t *ret_off)
{
	size_t pos = 0;

	for (int insn = 0; insn < 6 && pos < len; insn++) {
		const uint8_t *p = code + pos;
		size_t left = len - pos;

		/* Emulated by arch/x86/kernel/uprobes.c: probe here. */
		if ((p[0] >= 0x50 && p[0] <= 0x57) ||                 /* push %reg */
		    (left >= 2 && p[0] == 0x41 && p[1] >= 0x50 && p[1] <= 0x57) || /* push %r8-15 */
		    (p[0] >= 0x70 && p[0] <= 0x7f) ||                 /* jcc rel8 */
		    (left >= 2 && p[0] == 0x0f && p[1] >= 0x80 && p[1] <= 0x8f) ||  /* jcc rel32 */
		    p[0] == 0xeb || p[0] == 0xe9 || p[0] == 0xe8 ||   /* jmp, call */
		    p[0] == 0x90 || (left >= 2 && p[0] == 0x66 && p[1] == 0x90)) { /* nop */
			*ret_off = pos;
			return 0;
		}
		/* Flags-only instructions that may precede: step over them. */
		if (left >= 4 && p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa) {
			pos += 4; /* endbr64 */
			continue;
		}
		if (left >= 3 && is_rex(p[0]) && (p[1] == 0x85 || p[1] == 0x39 || p[1] == 0x3b) &&
		    (p[2] & 0xc0) == 0xc0) {
			pos += 3; /* test/cmp %r64,%r64 */
			continue;
		}
		if (left >= 2 && (p[0] == 0x85 || p[0] == 0x39 || p[0] == 0x3b) && (p[1] & 0xc0) == 0xc0) {
			pos += 2; /* test/cmp %r32,%r32 */
			continue;
		}
		if (left >= 4 && is_rex(p[0]) && p[1] == 0x83 && (p[2] & 0xf8) == 0xf8) {
			pos += 4; /* cmp $imm8,%r64 */
			continue;
		}
		if (left >= 7 && p[0] == 0x80 && p[1] == 0x3d) {
			pos += 7; /* cmpb $imm8,disp32(%rip) */
			continue;
		}
		if (left >= 7 && p[0] == 0x83 && p[1] == 0x3d) {
			pos += 7; /* cmpl $imm8,disp32(%rip) */
			continue;
		}
		break;
	}
	return -ENOEXEC;
}
