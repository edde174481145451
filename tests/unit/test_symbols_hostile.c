/* Hostile files for the symbolizer's readers, each as an unprivileged user or a container could
 * make it, and what must happen: a FIFO as a perf map or as a .gnu_debuglink candidate never
 * blocks (alarm() fails the test instead of hanging it); a symlink is never followed; a sparse
 * or endless perf map is read within its budget; many aliases of one huge name cost one copy;
 * a user's debug file never names a root-owned file. The counters say what was refused.
 * argv[1]: the fixtures directory. The ownership cases need root and are skipped without it. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "elffile.h"
#include "elfsyms.h"
#include "perfmap.h"

static char dir[] = "/tmp/ember-symhostile-XXXXXX";

static void write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || write(fd, buf, len) != (ssize_t)len) {
		perror(path);
		exit(2);
	}
	close(fd);
}

static void copy_file(const char *from, const char *to)
{
	static char buf[1 << 20];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
	if (in < 0 || out < 0) {
		perror(from);
		exit(2);
	}
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			exit(2);
	close(in);
	close(out);
}

static void test_perfmap_files(void)
{
	struct perfmap_counters before, after;
	struct perfmap *pm = NULL;
	char path[256], secret[256];

	/* a FIFO: refused before any open of it */
	snprintf(path, sizeof(path), "%s/fifo.map", dir);
	CHECK_INT(mkfifo(path, 0666), 0);
	perfmap_get_counters(&before);
	CHECK_INT(perfmap_open(path, &pm), 0);
	CHECK(perfmap_lookup(pm, 0x1000, NULL) == NULL);
	perfmap_get_counters(&after);
	CHECK(after.refused_files > before.refused_files);
	perfmap_free(pm);

	/* a symlink to a file the reader may not show: not followed */
	snprintf(secret, sizeof(secret), "%s/secret", dir);
	write_file(secret, "1000 100 SECRET_MARKER\n", 23);
	snprintf(path, sizeof(path), "%s/link.map", dir);
	CHECK_INT(symlink(secret, path), 0);
	perfmap_get_counters(&before);
	CHECK_INT(perfmap_open(path, &pm), 0);
	CHECK(perfmap_lookup(pm, 0x1010, NULL) == NULL);
	CHECK_INT(perfmap_count(pm), 0);
	perfmap_get_counters(&after);
	CHECK(after.refused_files > before.refused_files);
	perfmap_free(pm);
}

static void test_perfmap_budgets(void)
{
	struct perfmap_counters before, after;
	struct perfmap *pm = NULL;
	char path[256];
	size_t cap = 8u << 20, len = 0;
	char *buf = malloc(cap);
	int fd;

	/* a sparse 1 GiB file: read within PERFMAP_MAX_READ, then never again while unchanged */
	snprintf(path, sizeof(path), "%s/sparse.map", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 1ll << 30) == 0);
	close(fd);
	perfmap_get_counters(&before);
	CHECK_INT(perfmap_open(path, &pm), 0);
	perfmap_get_counters(&after);
	CHECK(after.bytes_read - before.bytes_read <= PERFMAP_MAX_READ);
	CHECK(after.bytes_skipped > before.bytes_skipped);
	for (int i = 0; i < 1000; i++)
		CHECK(perfmap_lookup(pm, 0x1000 + (uint64_t)i, NULL) == NULL);
	perfmap_get_counters(&before);
	CHECK(before.bytes_read == after.bytes_read); /* a miss does not re-read it */
	perfmap_free(pm);
	unlink(path);

	/* an over-long line is skipped, the next one is read */
	memset(buf, 'x', 100000);
	len = 100000;
	len += (size_t)sprintf(buf + len, "\n1000 10 after_long_line\n");
	snprintf(path, sizeof(path), "%s/long.map", dir);
	write_file(path, buf, len);
	CHECK_INT(perfmap_open(path, &pm), 0);
	CHECK_STR(perfmap_lookup(pm, 0x1004, NULL), "after_long_line");
	perfmap_free(pm);

	/* more lines than PERFMAP_MAX_ENTRIES: the rest is counted, not kept */
	len = 0;
	for (unsigned i = 0; i < PERFMAP_MAX_ENTRIES + 1000; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%x 1 f\n", 0x1000 + i);
	snprintf(path, sizeof(path), "%s/many.map", dir);
	write_file(path, buf, len);
	perfmap_get_counters(&before);
	CHECK_INT(perfmap_open(path, &pm), 0);
	CHECK_INT(perfmap_count(pm), PERFMAP_MAX_ENTRIES);
	perfmap_get_counters(&after);
	CHECK(after.entries_skipped - before.entries_skipped >= 1000);
	perfmap_free(pm);
	perfmap_get_counters(&after);
	CHECK_INT(after.entries, 0); /* every map freed gives its budget back */
	free(buf);
}

/* A process of another uid: a map root wrote for it is not its own, refused. */
static void test_perfmap_owner(void)
{
	struct perfmap_counters before, after;
	struct perfmap *pm = NULL;
	int pipefd[2];
	char path[64], c;
	pid_t pid;

	if (geteuid() != 0) {
		printf("perfmap owner check skipped: needs root\n");
		return;
	}
	if (pipe(pipefd))
		exit(2);
	pid = fork();
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	CHECK(read(pipefd[0], &c, 1) == 1);
	snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)pid);
	write_file(path, "1000 100 root_wrote_this\n", 25);
	perfmap_get_counters(&before);
	CHECK_INT(perfmap_open_pid(pid, &pm), 0);
	CHECK(perfmap_lookup(pm, 0x1010, NULL) == NULL);
	perfmap_get_counters(&after);
	CHECK_INT(after.refused_owner - before.refused_owner, 1);
	/* its own file is read */
	CHECK_INT(chown(path, 65534, 65534), 0);
	CHECK_STR(perfmap_lookup(pm, 0x1010, NULL), "root_wrote_this");
	perfmap_free(pm);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(path);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* An ELF64 relocatable-looking image with nsyms function symbols at distinct addresses, all
 * named by one name of name_len bytes: the aliases attack. */
static void *alias_elf(unsigned nsyms, size_t name_len, size_t *ret_size)
{
	size_t shstr_len = sizeof("\0.text\0.symtab\0.strtab\0.shstrtab");
	size_t strtab_len = 1 + name_len + 1;
	size_t symtab_len = (size_t)(nsyms + 1) * sizeof(Elf64_Sym);
	size_t off_sym = sizeof(Elf64_Ehdr), off_str = off_sym + symtab_len;
	size_t off_shstr = off_str + strtab_len, off_sh = (off_shstr + shstr_len + 7) & ~(size_t)7;
	size_t size = off_sh + 5 * sizeof(Elf64_Shdr);
	uint8_t *img = calloc(1, size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	Elf64_Sym *sym = (Elf64_Sym *)(img + off_sym);
	Elf64_Shdr *sh = (Elf64_Shdr *)(img + off_sh);

	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_DYN;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_ehsize = sizeof(Elf64_Ehdr);
	eh->e_shoff = off_sh;
	eh->e_shentsize = sizeof(Elf64_Shdr);
	eh->e_shnum = 5;
	eh->e_shstrndx = 4;
	for (unsigned i = 1; i <= nsyms; i++) {
		sym[i].st_name = 1;
		sym[i].st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC);
		sym[i].st_shndx = 1;
		sym[i].st_value = 0x1000 + 16ull * i;
		sym[i].st_size = 16;
	}
	memset(img + off_str + 1, 'A', name_len);
	memcpy(img + off_shstr, "\0.text\0.symtab\0.strtab\0.shstrtab", shstr_len);
	sh[1] = (Elf64_Shdr){ .sh_name = 1, .sh_type = SHT_NOBITS, .sh_flags = SHF_ALLOC | SHF_EXECINSTR,
			      .sh_addr = 0x1000, .sh_size = 16ull * (nsyms + 2) };
	sh[2] = (Elf64_Shdr){ .sh_name = 7, .sh_type = SHT_SYMTAB, .sh_offset = off_sym,
			      .sh_size = symtab_len, .sh_link = 3, .sh_info = 1,
			      .sh_entsize = sizeof(Elf64_Sym), .sh_addralign = 8 };
	sh[3] = (Elf64_Shdr){ .sh_name = 15, .sh_type = SHT_STRTAB, .sh_offset = off_str,
			      .sh_size = strtab_len, .sh_addralign = 1 };
	sh[4] = (Elf64_Shdr){ .sh_name = 23, .sh_type = SHT_STRTAB, .sh_offset = off_shstr,
			      .sh_size = shstr_len, .sh_addralign = 1 };
	*ret_size = size;
	return img;
}

static void test_aliases(void)
{
	struct elfsyms_counters before, during;
	struct elfsyms *es = NULL;
	char path[256];
	size_t size;
	void *img = alias_elf(200000, 1 << 20, &size); /* 5.8 MB: 200 GB copied once per alias */
	int fd;

	snprintf(path, sizeof(path), "%s/aliases.so", dir);
	write_file(path, img, size);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	elfsyms_get_counters(&before);
	CHECK_INT(elfsyms_load_fd(fd, path, NULL, &es), 0);
	close(fd);
	elfsyms_get_counters(&during);
	CHECK_INT(elfsyms_count(es), 200000);
	/* one copy of the name, cut at ELFSYMS_MAX_NAME */
	CHECK(during.name_bytes - before.name_bytes <= ELFSYMS_MAX_NAME + 1);
	CHECK(elfsyms_lookup(es, 0x1000 + 16 * 7 + 3, NULL) != NULL);
	CHECK_INT(strlen(elfsyms_lookup(es, 0x1000 + 16 * 7, NULL)), ELFSYMS_MAX_NAME);
	elfsyms_free(es);
	elfsyms_get_counters(&during);
	CHECK(during.name_bytes == before.name_bytes);
	free(img);

	/* 16k symbols named from every offset of one 16 KiB string: 16k distinct names, 128 MiB
	 * if each were kept, bounded by twice the string table */
	img = alias_elf(16384, 16384, &size);
	{
		Elf64_Sym *sym = (Elf64_Sym *)((uint8_t *)img + sizeof(Elf64_Ehdr));

		for (unsigned i = 1; i <= 16384; i++)
			sym[i].st_name = i;
	}
	write_file(path, img, size);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	elfsyms_get_counters(&before);
	CHECK_INT(elfsyms_load_fd(fd, path, NULL, &es), 0);
	close(fd);
	elfsyms_get_counters(&during);
	CHECK(during.name_bytes - before.name_bytes <= 2 * (16384 + 2) + 65536);
	CHECK(during.entries_skipped > before.entries_skipped);
	elfsyms_free(es);
	free(img);
}

/* The stripped fixture (build-id and .gnu_debuglink "sym_stripped.debug") copied next to a
 * FIFO of its debuglink's name, then next to a debug file of another owner. */
static void test_debuglink(const char *fixtures)
{
	struct elffile_counters before, after;
	struct elfsyms *es = NULL;
	char bin[256], dbg[256], from[512];
	size_t with_debug;
	int fd;

	snprintf(from, sizeof(from), "%s/sym_stripped", fixtures);
	snprintf(bin, sizeof(bin), "%s/sym_stripped", dir);
	snprintf(dbg, sizeof(dbg), "%s/sym_stripped.debug", dir);
	copy_file(from, bin);
	CHECK_INT(mkfifo(dbg, 0666), 0);
	fd = open(bin, O_RDONLY | O_CLOEXEC);
	elffile_get_counters(&before);
	CHECK_INT(elfsyms_load_fd(fd, bin, NULL, &es), 0); /* a blocking open would hang here */
	elffile_get_counters(&after);
	CHECK(after.debug_refused_files > before.debug_refused_files);
	CHECK(elfsyms_debug_path(es) == NULL);
	elfsyms_free(es);
	close(fd);
	unlink(dbg);

	snprintf(from, sizeof(from), "%s/sym_stripped.debug", fixtures);
	copy_file(from, dbg);
	fd = open(bin, O_RDONLY | O_CLOEXEC);
	CHECK_INT(elfsyms_load_fd(fd, bin, NULL, &es), 0);
	CHECK(elfsyms_debug_path(es) != NULL);
	with_debug = elfsyms_count(es);
	elfsyms_free(es);
	if (geteuid() != 0) {
		printf("debug file owner check skipped: needs root\n");
		close(fd);
		return;
	}
	/* a user's debug file for root's binary: refused */
	CHECK_INT(chown(dbg, 65534, 65534), 0);
	elffile_get_counters(&before);
	CHECK_INT(elfsyms_load_fd(fd, bin, NULL, &es), 0);
	elffile_get_counters(&after);
	CHECK_INT(after.debug_refused_owner - before.debug_refused_owner, 1);
	CHECK(elfsyms_debug_path(es) == NULL);
	CHECK(elfsyms_count(es) < with_debug);
	elfsyms_free(es);
	/* ... but trusted for that user's own binary */
	CHECK_INT(chown(bin, 65534, 65534), 0);
	CHECK_INT(elfsyms_load_fd(fd, bin, NULL, &es), 0);
	CHECK(elfsyms_debug_path(es) != NULL);
	elfsyms_free(es);
	close(fd);
}

/* The budgets keep real programs whole: every function symbol of Debian's largest libraries. */
static void test_real_libraries(void)
{
	static const char *const libs[] = {
		"/usr/lib/llvm-14/lib/libLLVM-14.so.1",
		"/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
	};

	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		struct elfsyms_counters before, after;
		struct elffile_counters fb, fa;
		struct elfsyms *es = NULL;
		int fd = open(libs[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			printf("%s: not installed, skipped\n", libs[i]);
			continue;
		}
		elfsyms_get_counters(&before);
		elffile_get_counters(&fb);
		CHECK_INT(elfsyms_load_fd(fd, libs[i], NULL, &es), 0);
		elfsyms_get_counters(&after);
		elffile_get_counters(&fa);
		CHECK(after.entries_skipped == before.entries_skipped);
		CHECK(fa.sections_refused == fb.sections_refused);
		CHECK(es && elfsyms_count(es) > 1000);
		printf("%s: %zu symbols, %llu name bytes\n", libs[i], es ? elfsyms_count(es) : 0,
		       (unsigned long long)(after.name_bytes - before.name_bytes));
		elfsyms_free(es);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || !mkdtemp(dir))
		return 2;
	alarm(60); /* a blocking open fails the test rather than hanging it */
	test_perfmap_files();
	test_perfmap_budgets();
	test_perfmap_owner();
	test_aliases();
	test_debuglink(argv[1]);
	test_real_libraries();
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	return check_exit("symbols_hostile");
}
