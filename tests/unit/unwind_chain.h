/* unwind_chain: call chains built with -O2 -fomit-frame-pointer and no sanitizer, each of which
 * captures its own registers and the top of its stack, as BPF does at a sample, for
 * test_unwind.c. Not thread-safe (one global snapshot). */
#ifndef EMBER_UNWIND_CHAIN_H
#define EMBER_UNWIND_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "unwind.h"

#define CHAIN_STACK_MAX 16384

struct chain_snapshot {
	struct unwind_regs regs;
	size_t len;                      /* bytes copied from regs.sp upward */
	uint8_t stack[CHAIN_STACK_MAX];
};

extern struct chain_snapshot chain_snap;
/* First address above the stack of the calling thread: the copy never reads past it. */
extern uintptr_t chain_stack_top;

/* main -> chain_a -> chain_b -> qsort -> ... -> chain_cmp -> chain_c -> chain_capture.
 * Every function has .eh_frame CFI. */
int chain_a(void);
/* main -> chain_df_a -> chain_df_b -> bsearch -> chain_df_cmp -> chain_df_c -> chain_capture.
 * The chain_df_* functions have .debug_frame CFI only. */
int chain_df_a(void);

/* chain_capture called from a function whose CFA rule is a DWARF expression that loops
 * forever (DW_OP_skip -3, or DW_OP_lit1; DW_OP_bra -4). */
void chain_loop_skip(void);
void chain_loop_bra(void);

void chain_capture(void);
/* libc's own function `name`, bypassing interposers (ASan replaces qsort and bsearch). */
void *chain_libc_sym(const char *name);

#endif
