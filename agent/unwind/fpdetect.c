#include "fpdetect.h"

#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "elffile.h"
#include "x86insn.h"

/* Functions smaller than this are often leaf stubs without a frame even in FP builds. */
#define MIN_FUNC_SIZE 32
/* Judging a few hundred functions is plenty and bounds the cost on huge binaries. */
#define MAX_JUDGED 2000
#define FP_SHARE 0.6

struct judge_ctx {
	Elf *e;
	size_t judged, fp;
};

/* Judges one function symbol by its first bytes; stops the walk at MAX_JUDGED. */
static int judge_one(const struct elffile_sym *sym, void *arg)
{
	struct judge_ctx *j = arg;
	const uint8_t *code;
	Elf_Data *text;
	GElf_Shdr tsh;
	Elf_Scn *tscn;
	uint64_t off;

	if (sym->type != STT_FUNC || sym->size < MIN_FUNC_SIZE || sym->shndx >= SHN_LORESERVE)
		return 0;
	/* Names starting with '_' are the toolchain's (crt _start, libc internals), built however
	 * the toolchain was, not like the program. */
	if (sym->name[0] == '_')
		return 0;
	tscn = elf_getscn(j->e, sym->shndx);
	if (!tscn || !gelf_getshdr(tscn, &tsh) || tsh.sh_type != SHT_PROGBITS ||
	    !(tsh.sh_flags & SHF_EXECINSTR) || sym->value < tsh.sh_addr ||
	    sym->value + X86INSN_PROLOGUE_WINDOW > tsh.sh_addr + tsh.sh_size)
		return 0;
	text = elf_getdata(tscn, NULL);
	off = sym->value - tsh.sh_addr;
	if (!text || !text->d_buf || off + X86INSN_PROLOGUE_WINDOW > text->d_size)
		return 0;
	code = (const uint8_t *)text->d_buf + off;
	j->judged++;
	if (x86insn_has_fp_prologue(code, sym->size < X86INSN_PROLOGUE_WINDOW ?
					      sym->size : X86INSN_PROLOGUE_WINDOW))
		j->fp++;
	return j->judged >= MAX_JUDGED;
}

int fpdetect_fd(int fd, enum fpdetect_result *ret_result, double *ret_share)
{
	struct judge_ctx j = { 0 };
	enum fpdetect_result r = FPDETECT_UNKNOWN;
	double share = -1;
	GElf_Ehdr eh;
	Elf *e;

	elffile_init();
	/* Read, not mapped: a file truncated under us is a read error, never a SIGBUS. */
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e)
		return -EINVAL;
	if (!gelf_getehdr(e, &eh)) {
		elf_end(e);
		return -EINVAL;
	}
	if (eh.e_machine == EM_X86_64) {
		j.e = e;
		(void)elffile_for_each_symbol(e, ELFFILE_SYM_SYMTAB, judge_one, &j);
		if (!j.judged)
			(void)elffile_for_each_symbol(e, ELFFILE_SYM_DYNSYM, judge_one, &j);
		if (j.judged >= 4) {
			share = (double)j.fp / (double)j.judged;
			r = share >= FP_SHARE ? FPDETECT_FP : FPDETECT_NO_FP;
		}
	}
	elf_end(e);
	*ret_result = r;
	if (ret_share)
		*ret_share = share;
	return 0;
}
