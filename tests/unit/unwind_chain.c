/* unwind_chain: see unwind_chain.h. The .eh_frame half. */
#include "unwind_chain.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

struct chain_snapshot chain_snap;
uintptr_t chain_stack_top;

static volatile int sink;
static int captured;

void *chain_libc_sym(const char *name)
{
	void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
	void *fn = libc ? dlsym(libc, name) : NULL;

	if (libc)
		dlclose(libc);
	return fn;
}

/* Records the registers at one instruction (all in one asm statement, so that no stack
 * adjustment falls between them), then copies the stack from that sp with plain loads: memcpy
 * would be checked by ASan against the redzones of instrumented frames further up. */
__attribute__((noinline)) void chain_capture(void)
{
	struct unwind_regs *r = &chain_snap.regs;
	const volatile uint64_t *src;
	uint64_t *dst;
	size_t len;

	memset(r, 0, sizeof(*r));
	__asm__ volatile("lea 0(%%rip), %%rax\n\t"
			 "mov %%rax, 0(%0)\n\t"
			 "mov %%rsp, 8(%0)\n\t"
			 "mov %%rbp, 16(%0)\n\t"
			 "mov %%rbx, 24(%0)\n\t"
			 "mov %%r12, 32(%0)\n\t"
			 "mov %%r13, 40(%0)\n\t"
			 "mov %%r14, 48(%0)\n\t"
			 "mov %%r15, 56(%0)\n\t"
			 :
			 : "r"(r)
			 : "rax", "memory");
	len = chain_stack_top - r->sp;
	if (len > CHAIN_STACK_MAX)
		len = CHAIN_STACK_MAX;
	len &= ~(size_t)7;
	src = (const volatile uint64_t *)(uintptr_t)r->sp;
	dst = (uint64_t *)chain_snap.stack;
	for (size_t i = 0; i < len / 8; i++)
		dst[i] = src[i];
	chain_snap.len = len;
}

__attribute__((noinline, noclone)) static void chain_c(void)
{
	chain_capture();
	sink++;
}

__attribute__((noinline, noclone)) static int chain_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	if (!captured) {
		captured = 1;
		chain_c();
	}
	sink++;
	return (x > y) - (x < y);
}

__attribute__((noinline, noclone)) static int chain_b(void)
{
	int keys[8] = { 5, 3, 7, 1, 8, 2, 6, 4 };

	void (*qsort_fn)(void *, size_t, size_t, int (*)(const void *, const void *));

	qsort_fn = (void (*)(void *, size_t, size_t, int (*)(const void *, const void *)))
		chain_libc_sym("qsort");
	if (!qsort_fn)
		return -1;
	captured = 0;
	qsort_fn(keys, 8, sizeof(keys[0]), chain_cmp);
	sink++;
	return keys[0];
}

__attribute__((noinline)) int chain_a(void)
{
	int r = chain_b();

	sink++;
	return r + 1;
}

/* Two leaves whose CFA rule is a DWARF expression that never ends, as a hostile file's can:
 * DW_CFA_def_cfa_expression (0x0f), then { DW_OP_skip -3 } (0x2f 0xfd 0xff: jumps back to
 * itself) or { DW_OP_lit1; DW_OP_bra -4 } (0x31 0x28 0xfc 0xff: pushes 1, branches back to
 * the push). Each calls chain_capture with its stack aligned. */
__asm__(".text\n"
	".globl chain_loop_skip\n"
	".type chain_loop_skip, @function\n"
	"chain_loop_skip:\n"
	".cfi_startproc\n"
	"	sub $8, %rsp\n"
	".cfi_escape 0x0f, 0x03, 0x2f, 0xfd, 0xff\n"
	"	call chain_capture@PLT\n"
	"	add $8, %rsp\n"
	".cfi_def_cfa rsp, 8\n"
	"	ret\n"
	".cfi_endproc\n"
	".size chain_loop_skip, .-chain_loop_skip\n"
	".globl chain_loop_bra\n"
	".type chain_loop_bra, @function\n"
	"chain_loop_bra:\n"
	".cfi_startproc\n"
	"	sub $8, %rsp\n"
	".cfi_escape 0x0f, 0x04, 0x31, 0x28, 0xfc, 0xff\n"
	"	call chain_capture@PLT\n"
	"	add $8, %rsp\n"
	".cfi_def_cfa rsp, 8\n"
	"	ret\n"
	".cfi_endproc\n"
	".size chain_loop_bra, .-chain_loop_bra\n");
