/* x86insn: the few x86-64 instruction patterns Ember recognises in machine code, in one place:
 * the frame-pointer prologue (fpdetect, for --unwind auto) and the instructions the kernel's
 * uprobe code emulates rather than single-steps (where the allocation collector probes free).
 *
 * Not a disassembler: each matcher knows a short list of encodings and says "unknown" for the
 * rest, and every read stays within [code, code + len). Pure functions, thread-safe. */
#ifndef EMBER_X86INSN_H
#define EMBER_X86INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes at a function's start within which x86insn_has_fp_prologue() looks: the prologue may
 * follow endbr64 or a few instructions the compiler scheduled first (argument moves in main at
 * -O2). */
#define X86INSN_PROLOGUE_WINDOW 24

/* Whether code[0..len) (a function's first bytes; at most X86INSN_PROLOGUE_WINDOW are looked
 * at) holds the frame-pointer prologue `push %rbp; mov %rsp,%rbp` (55 48 89 e5). */
bool x86insn_has_fp_prologue(const uint8_t *code, size_t len);

/* Where to put a uprobe in a function whose first bytes are code[0..len): the offset of the
 * first instruction arch/x86/kernel/uprobes.c emulates (push, jcc, jmp, call, nop), after
 * leading instructions that change nothing but flags (endbr64, test/cmp reg,reg, cmp imm to a
 * register or rip-relative memory), at most 6 instructions in. Returns 0 and sets *ret_off, or
 * -ENOEXEC for code it does not know (the caller probes the entry, single-stepped). */
int x86insn_uprobe_offset(const uint8_t *code, size_t len, size_t *ret_off);

#endif
