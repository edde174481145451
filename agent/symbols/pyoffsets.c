/* pyoffsets: _PyRuntime and the interpreter's offsets from an ELF file (see pyoffsets.h); the
 * tables and the _Py_DebugOffsets decoder themselves are in cpython/pylayout.c. */
#include "pyoffsets.h"

#include <errno.h>
#include <gelf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "elffile.h"

/* ---- ELF ---- */

struct elf_syms {
	GElf_Sym runtime, version;
	bool have_runtime, have_version, debug_build;
	uint64_t code_type, str_type, bytes_type; /* st_value of the type objects, 0: absent */
};

static void scan_symbols(Elf *e, Elf64_Word type, struct elf_syms *s)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;
		size_t n;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize)
			continue;
		d = elf_getdata(scn, NULL);
		if (!d)
			continue;
		n = sh.sh_size / sh.sh_entsize;
		if (n > ELFFILE_MAX_SYMBOLS)
			n = ELFFILE_MAX_SYMBOLS;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			const char *name;

			if (!gelf_getsym(d, (int)i, &sym) || sym.st_shndx == SHN_UNDEF)
				continue;
			name = elf_strptr(e, sh.sh_link, sym.st_name);
			if (!name || (name[0] != '_' && name[0] != 'P'))
				continue;
			if (!s->have_runtime && !strcmp(name, "_PyRuntime") &&
			    GELF_ST_TYPE(sym.st_info) == STT_OBJECT) {
				s->runtime = sym;
				s->have_runtime = true;
			} else if (!s->have_version && !strcmp(name, "Py_Version") &&
				   GELF_ST_TYPE(sym.st_info) == STT_OBJECT) {
				s->version = sym;
				s->have_version = true;
			} else if (GELF_ST_TYPE(sym.st_info) == STT_OBJECT &&
				   !strcmp(name, "PyCode_Type")) {
				s->code_type = sym.st_value;
			} else if (GELF_ST_TYPE(sym.st_info) == STT_OBJECT &&
				   !strcmp(name, "PyUnicode_Type")) {
				s->str_type = sym.st_value;
			} else if (GELF_ST_TYPE(sym.st_info) == STT_OBJECT &&
				   !strcmp(name, "PyBytes_Type")) {
				s->bytes_type = sym.st_value;
			} else if (!strcmp(name, "_Py_RefTotal") || !strcmp(name, "_Py_GetRefTotal") ||
				   !strcmp(name, "_Py_GetGlobalRefTotal")) {
				/* Py_REF_DEBUG, i.e. a --with-pydebug build: other layouts. */
				s->debug_build = true;
			}
		}
	}
}

/* n bytes of the file's initialized data at virtual address addr. 0 or -EINVAL. */
static int read_vaddr(Elf *e, uint64_t addr, void *buf, size_t n)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
		    !(sh.sh_flags & SHF_ALLOC) || addr < sh.sh_addr ||
		    addr - sh.sh_addr >= sh.sh_size)
			continue;
		d = elf_getdata(scn, NULL);
		if (!d || !d->d_buf || addr - sh.sh_addr > d->d_size ||
		    d->d_size - (addr - sh.sh_addr) < n)
			return -EINVAL;
		memcpy(buf, (const uint8_t *)d->d_buf + (addr - sh.sh_addr), n);
		return 0;
	}
	return -EINVAL;
}

/* The minor in "python3.NN" within s, or -1. */
static int minor_in_name(const char *s)
{
	const char *p = s ? strstr(s, "python3.") : NULL;
	int minor = 0, digits = 0;

	if (!p)
		return -1;
	for (p += 8; *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
		minor = minor * 10 + (*p - '0');
	return digits ? minor : -1;
}

static const char *soname(Elf *e)
{
	Elf_Scn *scn = NULL;

	while ((scn = elf_nextscn(e, scn))) {
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC || !sh.sh_entsize)
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize && i < 4096; i++) {
			GElf_Dyn dyn;

			if (!gelf_getdyn(d, (int)i, &dyn) || dyn.d_tag == DT_NULL)
				break;
			if (dyn.d_tag == DT_SONAME)
				return elf_strptr(e, sh.sh_link, dyn.d_un.d_val);
		}
	}
	return NULL;
}

int pyoffsets_from_elf(Elf *e, const char *path, struct pyoffsets_elf *ret)
{
	struct elf_syms s = { 0 };
	struct pyoffsets o;
	uint32_t version = 0;
	GElf_Ehdr eh;
	int err;

	if (!e || !gelf_getehdr(e, &eh))
		return -EINVAL;
	scan_symbols(e, SHT_DYNSYM, &s);
	scan_symbols(e, SHT_SYMTAB, &s);
	if (!s.have_runtime)
		return -ENOENT;
	if (eh.e_machine != EM_X86_64 || eh.e_ident[EI_CLASS] != ELFCLASS64 || s.debug_build)
		return -ENOTSUP;
	if (s.have_version) {
		/* const unsigned long Py_Version: 8 bytes on x86-64, the value in the low word. */
		uint64_t v = 0;

		if ((s.version.st_size != 4 && s.version.st_size != 8) ||
		    read_vaddr(e, s.version.st_value, &v, s.version.st_size) || v >> 32)
			return -EINVAL;
		version = (uint32_t)v;
	} else {
		/* Py_Version exists from 3.11 on: without it only 3.10 is accepted, by name. */
		int minor = minor_in_name(soname(e));

		if (minor < 0)
			minor = minor_in_name(path ? strrchr(path, '/') : NULL);
		if (minor < 0)
			minor = minor_in_name(path);
		if (minor != 10)
			return -ENOTSUP;
		version = 0x030a0000;
	}
	if (version >> 24 != 3 || ((version >> 16) & 0xff) < 10 || ((version >> 16) & 0xff) > 14)
		return -ENOTSUP;
	if (((version >> 16) & 0xff) <= 12) {
		err = pyoffsets_for_version(version, &o);
	} else {
		uint8_t dbg[1024];
		size_t n = s.runtime.st_size < sizeof(dbg) ? s.runtime.st_size : sizeof(dbg);

		if (n < 24 || read_vaddr(e, s.runtime.st_value, dbg, n))
			return -EINVAL;
		err = pyoffsets_from_debug(dbg, n, version, &o);
		if (err == -ENOENT) /* 3.13+ without its cookie: not a build we know */
			err = -EINVAL;
	}
	if (err)
		return err;
	if (s.runtime.st_size && o.runtime_interpreters_head >= s.runtime.st_size)
		return -EINVAL;
	ret->runtime_addr = s.runtime.st_value;
	ret->runtime_size = s.runtime.st_size;
	ret->code_type_addr = s.code_type;
	ret->str_type_addr = s.str_type;
	ret->bytes_type_addr = s.bytes_type;
	ret->off = o;
	return 0;
}
