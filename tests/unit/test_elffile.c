/* test_elffile: the one ELF symbol walk (elffile_for_each_symbol) on a fixture binary and on
 * Debian's libc: which tables and kinds it reports, its filters, and that a callback stops it.
 * argv[1] is the fixtures directory. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "elffile.h"

struct seen {
	const char *want;       /* a name to look for */
	struct elffile_sym hit; /* its symbol, when found */
	int found;
	size_t n, local, ifunc, other_table, stop_at;
	Elf64_Word table;
};

static int look(const struct elffile_sym *sym, void *arg)
{
	struct seen *s = arg;

	s->n++;
	s->local += sym->bind == STB_LOCAL;
	s->ifunc += sym->type == STT_GNU_IFUNC;
	s->other_table += sym->table != s->table;
	if (!sym->name || !*sym->name || !sym->value)
		return -1; /* the walk must never report these */
	if (!s->found && !strcmp(sym->name, s->want)) {
		s->hit = *sym;
		s->found = 1;
	}
	return s->stop_at && s->n == s->stop_at ? 42 : 0;
}

static Elf *open_elf(const char *path, int *ret_fd)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf *e;

	if (fd < 0) {
		fprintf(stderr, "cannot open %s\n", path);
		return NULL;
	}
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e)
		close(fd);
	*ret_fd = fd;
	return e;
}

int main(int argc, char **argv)
{
	struct seen s;
	char path[512];
	Elf *e;
	int fd;

	if (argc < 2)
		return 2;
	elffile_init();

	snprintf(path, sizeof(path), "%s/cpu_split_fp", argv[1]);
	e = open_elf(path, &fd);
	CHECK(e != NULL);
	if (e) {
		s = (struct seen){ .want = "hot_alpha", .table = SHT_SYMTAB };
		CHECK_INT(elffile_for_each_symbol(e, ELFFILE_SYM_SYMTAB, look, &s), 0);
		CHECK(s.found);
		CHECK(s.hit.type == STT_FUNC && s.hit.bind == STB_GLOBAL && s.hit.size > 0);
		CHECK(s.local > 0); /* static functions (thread_cpu, on_term) are in .symtab */
		CHECK_INT(s.other_table, 0);

		s = (struct seen){ .want = "hot_alpha", .table = SHT_SYMTAB };
		CHECK_INT(elffile_for_each_symbol(e, ELFFILE_SYM_SYMTAB | ELFFILE_SYM_NO_LOCAL, look,
						  &s), 0);
		CHECK(s.found);
		CHECK_INT(s.local, 0);

		/* The callback's non-zero return stops the walk and is returned. */
		s = (struct seen){ .want = "", .table = SHT_SYMTAB, .stop_at = 2 };
		CHECK_INT(elffile_for_each_symbol(e, ELFFILE_SYM_SYMTAB, look, &s), 42);
		CHECK_INT(s.n, 2);

		/* No table selected: nothing reported, not an error. */
		s = (struct seen){ .want = "" };
		CHECK_INT(elffile_for_each_symbol(e, 0, look, &s), 0);
		CHECK_INT(s.n, 0);
		elf_end(e);
		close(fd);
	}

	e = open_elf("/lib/x86_64-linux-gnu/libc.so.6", &fd);
	CHECK(e != NULL);
	if (e) {
		/* Debian's libc is stripped: .dynsym only; strlen & co. are IFUNCs. */
		s = (struct seen){ .want = "malloc", .table = SHT_DYNSYM };
		CHECK_INT(elffile_for_each_symbol(e, ELFFILE_SYM_SYMTAB | ELFFILE_SYM_DYNSYM, look,
						  &s), 0);
		CHECK(s.found);
		CHECK(s.hit.table == SHT_DYNSYM && s.hit.type == STT_FUNC);
		CHECK_INT(s.ifunc, 0);
		s = (struct seen){ .want = "strlen", .table = SHT_DYNSYM };
		CHECK_INT(elffile_for_each_symbol(e, ELFFILE_SYM_DYNSYM | ELFFILE_SYM_IFUNC, look, &s),
			  0);
		CHECK(s.ifunc > 0);
		CHECK(s.found && s.hit.type == STT_GNU_IFUNC);
		elf_end(e);
		close(fd);
	}
	return check_exit("test_elffile");
}
