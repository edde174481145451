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
