#include "fpdetect.h"

#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* Functions smaller than this are often leaf stubs without a frame even in FP builds. */
#define MIN_FUNC_SIZE 32
/* Judging a few hundred functions is plenty and bounds the cost on huge binaries. */
#define MAX_JUDGED 2000
#define FP_SHARE 0.6

static __thread double last_share = -1;

double fpdetect_last_share(void)
{
	return last_share;
}

/* The prologue may follow endbr64 or a few instructions the compiler scheduled first (argument
 * moves in main at -O2): look for it in the first PROLOGUE_WINDOW bytes. */
#define PROLOGUE_WINDOW 24

static bool has_prologue(const unsigned char *p, size_t n)
{
	static const unsigned char push_mov[] = { 0x55, 0x48, 0x89, 0xe5 };

	for (size_t i = 0; i + sizeof(push_mov) <= n; i++)
		if (!memcmp(p + i, push_mov, sizeof(push_mov)))
			return true;
	return false;
}

/* Looks symbols up in one symbol table section; returns the number judged. */
static size_t judge(Elf *e, Elf_Scn *symscn, size_t *ret_fp)
{
	GElf_Shdr sh;
	Elf_Data *syms;
	size_t n, judged = 0;

	if (!gelf_getshdr(symscn, &sh) || !sh.sh_entsize || !(syms = elf_getdata(symscn, NULL)))
		return 0;
	n = sh.sh_size / sh.sh_entsize;
	for (size_t i = 0; i < n && judged < MAX_JUDGED; i++) {
		GElf_Sym sym;
		GElf_Shdr tsh;
		const char *name;
		Elf_Scn *tscn;
		Elf_Data *text;
		uint64_t off;

		if (!gelf_getsym(syms, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_size < MIN_FUNC_SIZE || sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE)
			continue;
		/* Names starting with '_' are the toolchain's (crt _start, libc internals), built
		 * however the toolchain was, not like the program. */
		name = elf_strptr(e, sh.sh_link, sym.st_name);
		if (!name || name[0] == '_')
			continue;
		tscn = elf_getscn(e, sym.st_shndx);
		if (!tscn || !gelf_getshdr(tscn, &tsh) || tsh.sh_type != SHT_PROGBITS ||
		    !(tsh.sh_flags & SHF_EXECINSTR) || sym.st_value < tsh.sh_addr ||
		    sym.st_value + PROLOGUE_WINDOW > tsh.sh_addr + tsh.sh_size)
			continue;
		text = elf_getdata(tscn, NULL);
		off = sym.st_value - tsh.sh_addr;
		if (!text || !text->d_buf || off + PROLOGUE_WINDOW > text->d_size)
			continue;
		judged++;
		if (has_prologue((const unsigned char *)text->d_buf + off,
				 sym.st_size < PROLOGUE_WINDOW ? sym.st_size : PROLOGUE_WINDOW))
			(*ret_fp)++;
	}
	return judged;
}

int fpdetect_fd(int fd)
{
	Elf_Scn *scn = NULL, *symtab = NULL, *dynsym = NULL;
	size_t fp = 0, judged;
	GElf_Ehdr eh;
	Elf *e;

	last_share = -1;
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		return -EINVAL;
	if (!gelf_getehdr(e, &eh)) {
		elf_end(e);
		return -EINVAL;
	}
	if (eh.e_machine != EM_X86_64) {
		elf_end(e);
		return FPDETECT_UNKNOWN;
	}
	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_SYMTAB)
			symtab = scn;
		else if (sh.sh_type == SHT_DYNSYM)
			dynsym = scn;
	}
	judged = symtab ? judge(e, symtab, &fp) : 0;
	if (!judged && dynsym)
		judged = judge(e, dynsym, &fp);
	elf_end(e);
	if (judged < 4)
		return FPDETECT_UNKNOWN;
	last_share = (double)fp / (double)judged;
	return last_share >= FP_SHARE ? FPDETECT_FP : FPDETECT_NO_FP;
}
