/* fpdetect: does an ELF binary keep frame pointers? Used by --unwind auto to pick frame-pointer
 * walks (cheap, in BPF) for processes whose code keeps them and DWARF snapshots otherwise.
 *
 * The test reads the first bytes of every sizeable function symbol (.symtab, else .dynsym) and
 * counts x86-64 frame-pointer prologues (x86insn_has_fp_prologue(): `push %rbp; mov %rsp,%rbp`,
 * possibly after endbr64). Code built with -fno-omit-frame-pointer has it in nearly every
 * function; -fomit-frame-pointer code in almost none. Stateless and thread-safe. */
#ifndef EMBER_FPDETECT_H
#define EMBER_FPDETECT_H

/* The verdict for one file. Non-negative, and returned apart from the errno, so that no value
 * can be mistaken for an error (FPDETECT_UNKNOWN used to be -1, i.e. -EPERM). */
enum fpdetect_result {
	FPDETECT_UNKNOWN = 0, /* no symbols to judge by (stripped), or not x86-64 */
	FPDETECT_NO_FP = 1,   /* most functions do not set up a frame pointer */
	FPDETECT_FP = 2,      /* most do */
};

/* Classifies the ELF file open at fd (the caller keeps the fd). Returns 0 with the verdict in
 * *ret_result and, in *ret_share (may be NULL), the share of judged functions with a
 * frame-pointer prologue (0..1; negative when nothing was judged); or -EINVAL when the file
 * cannot be read as ELF (nothing written then). */
int fpdetect_fd(int fd, enum fpdetect_result *ret_result, double *ret_share);

#endif
