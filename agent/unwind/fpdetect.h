/* fpdetect: does an ELF binary keep frame pointers? Used by --unwind auto to pick frame-pointer
 * walks (cheap, in BPF) for processes whose code keeps them and DWARF snapshots otherwise.
 *
 * The test reads the first bytes of every sizeable function symbol (.symtab, else .dynsym) and
 * counts x86-64 frame-pointer prologues: `push %rbp; mov %rsp,%rbp` (55 48 89 e5), optionally
 * after `endbr64` (f3 0f 1e fa). Code built with -fno-omit-frame-pointer has it in nearly every
 * function; -fomit-frame-pointer code in almost none. Stateless and thread-safe. */
#ifndef EMBER_FPDETECT_H
#define EMBER_FPDETECT_H

/* Result for one file. */
enum fpdetect_result {
	FPDETECT_FP = 1,      /* most functions set up a frame pointer */
	FPDETECT_NO_FP = 0,   /* most do not */
	FPDETECT_UNKNOWN = -1 /* no symbols to judge by (stripped), or not x86-64 */
};

/* Classifies the ELF file open at fd (the caller keeps the fd). Returns an enum fpdetect_result,
 * or -errno when the file cannot be read as ELF. */
int fpdetect_fd(int fd);

/* Share of judged functions with a frame-pointer prologue, for tests and logs (0..1), from the
 * last fpdetect_fd() call on this thread; negative when nothing was judged. */
double fpdetect_last_share(void);

#endif
