/* unwind: see unwind.h.
 *
 * Shape: the processes, their captured mappings (all of them, not only executable ones:
 * .eh_frame_hdr and .eh_frame usually sit in a read-only, non-executable segment) and the
 * modules are the proccache's, shared with the symbolizer. The unwinder keeps, in each process
 * entry's UNWIND slot, a load bias per mapping (rebuilt when the cache captures the process
 * again) and the process's own libunwind address space (the register-state cache is keyed by
 * IP alone, so it must not be shared between processes); in each module's UNWIND slot, what
 * our loader (load_tables, run by the cache while it holds a new file open) copies from the
 * file with pread: its PT_LOADs, .eh_frame_hdr and .eh_frame, and its converted .debug_frame.
 * No file stays mapped: a truncated file cannot fault us (SIGBUS). The build-id and debug files
 * come from elffile. libunwind searches .eh_frame_hdr's binary-search table as an
 * UNW_INFO_FORMAT_REMOTE_TABLE, reading the table and the FDEs through access_mem, which reads
 * those copies. Every accessor call spends the unwind's budget (UNWIND_CALL_BUDGET).
 *
 * .debug_frame: libunwind only reads it from files it opens itself and caches by address range
 * in its global address space, which would mix processes up. So a module's .debug_frame is
 * rewritten once into .eh_frame form (CIE augmentation "zR", PC-relative 8-byte pointers) with
 * its own sorted table, and served to libunwind at a synthetic address, bias + SYNTH_BASE,
 * outside every user address space. SYNTH_BASE is a multiple of 2^32, so the table's 32-bit
 * offsets relative to that segbase are the functions' ELF vaddrs, and the PC-relative pointers
 * do not depend on the bias: one image serves every process that maps the module.
 *
 * Choices the header leaves open:
 * - files are opened by the cache (procmaps_open_file: /proc/PID/map_files, then
 *   /proc/PID/root/PATH, checked against the mapped inode); a module the cache made before
 *   this unwinder registered its loader, and the lookup of a separate debug file, open the
 *   file again that way, checked to be the same file (device, inode, size, mtime);
 * - tables are shared between processes only through the cache's modules, which are keyed by
 *   file identity: a file claiming another's build-id gets its own tables;
 * - our copies of .eh_frame and of the converted .debug_frame are walked once as libunwind
 *   walks them, and register numbers libunwind 1.6 would use unchecked are rewritten
 *   (cfi_sanitize);
 * - a PC outside every mapping re-reads the maps, at most once a second per process, never
 *   once the process was seen gone;
 * - we hold at most UNWIND_MAX_PROCS processes, letting go of the least recently unwound;
 * - the vDSO is the cache's copy of our own (same kernel);
 * - libunwind's fallback for a PC without unwind info (follow rbp) is never trusted: the stack
 *   ends there, truncated. */
#include "unwind.h"
#include "unwind_fuzz.h"
#include "unwind_sigmask.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <libunwind.h>

#include "elffile.h"
#include "log.h"
#include "proccache.h"
#include "procmaps.h"
#include "util.h"

/* Exported by libunwind (UNW_OBJ), declared only in its private headers. */
extern int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip,
					      unw_dyn_info_t *di, unw_proc_info_t *pi,
					      int need_unwind_info, void *arg);
#define dwarf_search_unwind_table UNW_OBJ(dwarf_search_unwind_table)

#define UNWIND_MAX_PROCS 1024
#define HOLD PROCCACHE_HOLD_UNWINDER
/* libunwind register-state cache entries per process (a power of two). */
#define AS_CACHE_SIZE 256
/* Budgets. Real files (Debian 12): libLLVM-14.so.1 (105 MiB) has a 4.8 MiB .eh_frame and a
 * 742 KiB .eh_frame_hdr (95k FDEs); libstdc++ 196 + 38 KiB; libc 150 + 29 KiB. libtorch_cpu,
 * the largest library in common use, has a few times libLLVM's: 64 MiB per module leaves
 * room; 1 GiB for every module held bounds what a host full of hostile files can cost.
 * CIEs are ~20 bytes, FDEs tens to hundreds (a few KiB for huge functions). */
#define UNWIND_TABLE_MAX (64ull << 20)   /* .eh_frame_hdr + .eh_frame of one module */
#define UNWIND_TOTAL_MAX (1024ull << 20) /* ... of every module held */
#define DEBUG_FRAME_MAX (64u << 20)      /* a .debug_frame: raw, decompressed, converted */
#define CIE_MAX 4096u
#define FDE_MAX (256u << 10)
#define PHDR_MAX 1024u    /* program headers read (real: ~10-15) */
#define LOADS_MAX 32u     /* PT_LOADs kept (real: 4-5) */
#define SHSTRTAB_MAX (1u << 20)
/* libunwind accessor calls (memory and register reads, unwind-info lookups) one unwind_stack()
 * may make, and one step of it (one frame); past either every accessor fails, so libunwind
 * returns and the stack ends, truncated. Nothing else bounds libunwind's DWARF expression and
 * CFA interpreters: an expression that jumps to itself (DW_OP_skip -3) reads a word per turn,
 * forever. libunwind reads CFI a byte per call, so a frame costs its FDE's length plus the
 * table search (2 log2(FDEs)) plus a few register reads: libLLVM-14's FDEs are 44 bytes
 * (median), 100 (p99), 2388 (largest); libc's and libstdc++'s at most 192 and 756. A step
 * gets 16k (7x the largest FDE); a stack of EMBER_MAX_STACK_DEPTH (127) frames of 1k each
 * fits in 128k. A step that spends its budget marks its module's CFI hostile: its frames
 * end the stack from then on (counted), so a file that does it once costs no more. */
#define UNWIND_CALL_BUDGET 131072u
#define STEP_CALL_BUDGET 16384u

/* Synthetic addresses of converted .debug_frame images: bias + SYNTH_BASE. Non-canonical for
 * any bias (user space ends below 2^56), and a multiple of 2^32 (see the top comment). */
#define SYNTH_BASE 0x4000000000000000ull
#define SYNTH_SPAN 0x0100000000000000ull

#define DW_EH_PE_absptr 0x00
#define DW_EH_PE_udata2 0x02
#define DW_EH_PE_udata4 0x03
#define DW_EH_PE_udata8 0x04
#define DW_EH_PE_sdata2 0x0a
#define DW_EH_PE_sdata4 0x0b
#define DW_EH_PE_sdata8 0x0c
#define DW_EH_PE_pcrel 0x10
#define DW_EH_PE_datarel 0x30
#define DW_EH_PE_omit 0xff

struct load_seg {
	uint64_t vaddr, off, filesz;
	uint32_t flags; /* PF_* */
};

enum dbg_state { DBG_UNTRIED = 0, DBG_NONE, DBG_READY };

/* The unwinder's slot of a proccache module: what it derives from the image. */
struct umod {
	struct proccache_module *pm; /* the file: image, libelf handle, path, identity */
	struct load_seg *loads;
	size_t nr_loads;
	bool has_hdr;        /* usable .eh_frame_hdr */
	uint64_t hdr_vaddr, hdr_off, table_vaddr, fde_count;
	/* copies of the file's bytes libunwind reads: .eh_frame_hdr, .eh_frame */
	struct extent {
		uint64_t off; /* file offset */
		size_t len;
		uint8_t *data;
	} ext[2];
	size_t nr_ext;
	uint64_t bytes;      /* ext and dbg, in tables_bytes */
	bool hostile;        /* a step in it spent STEP_CALL_BUDGET: no unwind info from now on */
	enum dbg_state dbg_state;
	uint8_t *dbg;        /* converted .debug_frame, then its table */
	size_t dbg_size;
	uint64_t dbg_table_off, dbg_count;
};

struct umap {
	uint64_t start, end, pgoff;
	uint64_t bias;    /* runtime address minus ELF vaddr (mod 2^64) */
	struct umod *mod; /* NULL: anonymous, or not a readable ELF file */
	const struct proccache_map *pmap; /* the cache's mapping, same capture */
};

/* The unwinder's slot of a proccache process: its mappings with load biases, derived from the
 * cache's capture number gen, and its own libunwind address space (the register-state cache
 * is keyed by IP alone, so it must not be shared between processes). */
struct uproc {
	uint64_t gen;
	uint64_t last_use;
	struct umap *maps;
	size_t nr_maps;
	unw_addr_space_t as;
};

struct unwinder {
	struct proccache *pc;
	uint64_t tick;
	size_t nr_held; /* processes held by us */
	struct unwind_stats stats;
	uint64_t refused[UNWIND_REFUSED_MAX]; /* atomics: read by unwind_refused() */
};

/* State of one unwind_stack() call, the `arg` of every accessor. */
struct unwind_ctx {
	struct unwinder *u;
	struct proccache_proc *p;
	struct uproc *proc;
	const struct unwind_regs *regs;
	const uint8_t *stack;
	uint64_t sp;
	size_t stack_len;
	const struct umap *last_map; /* last mapping a read hit */
	const struct umap *dbg_map;  /* mapping whose synthetic .debug_frame was served last */
	bool no_info;                /* find_proc_info found nothing during this step */
	bool mem_fault;
	uint32_t calls;              /* accessor calls so far, against UNWIND_CALL_BUDGET */
	uint32_t step_calls;         /* ... in this unw_step(), against STEP_CALL_BUDGET */
	bool over_budget;
	bool step_over_budget;       /* it was this step's budget */
};

/* ---- bounded readers over a byte range ---- */

struct cur {
	const uint8_t *p, *end;
	bool bad;
};

static bool cur_take(struct cur *c, void *dst, size_t n)
{
	if (c->bad || (size_t)(c->end - c->p) < n) {
		c->bad = true;
		if (dst)
			memset(dst, 0, n);
		return false;
	}
	if (dst)
		memcpy(dst, c->p, n);
	c->p += n;
	return true;
}

static uint8_t cur_u8(struct cur *c)
{
	uint8_t v;

	cur_take(c, &v, 1);
	return v;
}

static uint32_t cur_u32(struct cur *c)
{
	uint32_t v;

	cur_take(c, &v, 4);
	return v;
}

static uint64_t cur_u64(struct cur *c)
{
	uint64_t v;

	cur_take(c, &v, 8);
	return v;
}

/* LEB128: the value's bits, and (for the signed form) the bit count and the last byte. */
static uint64_t cur_leb(struct cur *c, unsigned int *ret_shift, uint8_t *ret_last)
{
	uint64_t v = 0;
	unsigned int shift = 0;
	uint8_t b;

	do {
		b = cur_u8(c);
		if (shift < 64)
			v |= (uint64_t)(b & 0x7f) << shift;
		shift += 7;
	} while ((b & 0x80) && !c->bad);
	*ret_shift = shift;
	*ret_last = b;
	return v;
}

static uint64_t cur_uleb(struct cur *c)
{
	unsigned int shift;
	uint8_t last;

	return cur_leb(c, &shift, &last);
}

static int64_t cur_sleb(struct cur *c)
{
	unsigned int shift;
	uint8_t last;
	uint64_t v = cur_leb(c, &shift, &last);

	if (shift < 64 && (last & 0x40))
		v |= ~0ull << shift;
	return (int64_t)v;
}

/* Reads a DW_EH_PE-encoded value of .eh_frame_hdr at file offset pos (vaddr pos_vaddr). Only
 * what linkers emit there: absolute or PC/data-relative 2/4/8-byte values. */
static bool read_encoded(struct cur *c, uint8_t enc, uint64_t pos_vaddr, uint64_t hdr_vaddr,
			 uint64_t *ret)
{
	uint64_t v;

	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		v = cur_u64(c);
		break;
	case DW_EH_PE_udata4:
		v = cur_u32(c);
		break;
	case DW_EH_PE_sdata4:
		v = (uint64_t)(int64_t)(int32_t)cur_u32(c);
		break;
	default:
		return false;
	}
	switch (enc & 0x70) {
	case 0:
		break;
	case DW_EH_PE_pcrel:
		v += pos_vaddr;
		break;
	case DW_EH_PE_datarel:
		v += hdr_vaddr;
		break;
	default:
		return false;
	}
	*ret = v;
	return !c->bad;
}

/* ---- CFI sanitizer ---- */

/* libunwind 1.6 (Debian 12) trusts two register numbers of the CFI it parses: the second one
 * of DW_CFA_register and a CIE's return-address column index its register arrays unchecked
 * (apply_reg_state), so a file could make it read out of bounds of the agent's stack. Both are
 * rewritten in our copies, in place and at the same length, to a register it accepts; the
 * walk over the instructions is the one libunwind makes (an opcode it does not know is one
 * byte; one it refuses ends the walk). */
#define CFI_NUM_REGS 17 /* DWARF_NUM_PRESERVED_REGS on x86-64 */

/* Rewrites the ULEB128 at p (n bytes) as v, padded to n bytes. */
static void uleb_rewrite(uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i ? 0 : v) | (i + 1 < n ? 0x80 : 0));
}

/* The ULEB128 at c (its value), and where it started and how long it is. */
static uint64_t cur_uleb_at(struct cur *c, uint8_t **ret_p, size_t *ret_n)
{
	const uint8_t *start = c->p;
	uint64_t v = cur_uleb(c);

	*ret_p = (uint8_t *)start;
	*ret_n = (size_t)(c->p - start);
	return v;
}

static size_t enc_size(uint8_t enc)
{
	switch (enc & 0x0f) {
	case DW_EH_PE_absptr:
	case DW_EH_PE_udata8:
	case DW_EH_PE_sdata8:
		return 8;
	case DW_EH_PE_udata4:
	case DW_EH_PE_sdata4:
		return 4;
	case DW_EH_PE_udata2:
	case DW_EH_PE_sdata2:
		return 2;
	default:
		return 0;
	}
}

/* A LEB128 of c, flagging *odd when it is longer than 9 bytes: libunwind's reader shifts past
 * 63 bits there (x86 takes the count mod 64), so its value and ours would differ. */
static uint64_t walk_leb(struct cur *c, bool is_signed, bool *odd, uint8_t **ret_p, size_t *ret_n)
{
	const uint8_t *start = c->p;
	uint64_t v = is_signed ? (uint64_t)cur_sleb(c) : cur_uleb(c);

	if (c->p - start > 9)
		*odd = true;
	if (ret_p) {
		*ret_p = (uint8_t *)start;
		*ret_n = (size_t)(c->p - start);
	}
	return v;
}

/* Walks one CFI program in [c->p, c->end), as libunwind does; returns how many operands it
 * rewrote. Where our walk and libunwind's could part (an over-long LEB128, an expression
 * running past the entry, an address of unknown size), the rest of the program becomes
 * DW_CFA_nop: libunwind then uses the rules made so far. */
static unsigned cfi_walk(struct cur *c, uint8_t fde_enc)
{
	unsigned fixed = 0;

	while (!c->bad && c->p < c->end) {
		uint8_t *op_p = (uint8_t *)c->p, op = cur_u8(c), *rp;
		uint64_t r1, r2, len;
		bool odd = false;
		size_t rn;

		if (op & 0xc0) {
			if ((op & 0xc0) == 0x80)
				(void)walk_leb(c, false, &odd, NULL, NULL); /* DW_CFA_offset */
		} else {
			switch (op) {
			case 0x01: /* set_loc */
				if (!enc_size(fde_enc))
					odd = true;
				else
					cur_take(c, NULL, enc_size(fde_enc));
				break;
			case 0x02: cur_take(c, NULL, 1); break;
			case 0x03: cur_take(c, NULL, 2); break;
			case 0x04: cur_take(c, NULL, 4); break;
			case 0x0c: case 0x0d: case 0x12:
				/* def_cfa, def_cfa_register, def_cfa_sf: libunwind keeps the CFA's
				 * register as a number and looks it up at the step; one past its
				 * register array becomes rsp rather than trusting that lookup. */
				r1 = walk_leb(c, false, &odd, &rp, &rn);
				if (!c->bad && !odd && r1 >= CFI_NUM_REGS) {
					uleb_rewrite(rp, rn, 7);
					fixed++;
				}
				if (op != 0x0d)
					(void)walk_leb(c, op == 0x12, &odd, NULL, NULL);
				break;
			case 0x05: case 0x2f: /* reg, uleb */
				(void)walk_leb(c, false, &odd, NULL, NULL);
				(void)walk_leb(c, false, &odd, NULL, NULL);
				break;
			case 0x11: /* reg, sleb */
				(void)walk_leb(c, false, &odd, NULL, NULL);
				(void)walk_leb(c, true, &odd, NULL, NULL);
				break;
			case 0x06: case 0x07: case 0x08: case 0x0e: case 0x2e:
				(void)walk_leb(c, false, &odd, NULL, NULL);
				break;
			case 0x13:
				(void)walk_leb(c, true, &odd, NULL, NULL);
				break;
			case 0x09: /* DW_CFA_register: libunwind does not check the second one */
				r1 = walk_leb(c, false, &odd, NULL, NULL);
				r2 = walk_leb(c, false, &odd, &rp, &rn);
				if (!c->bad && !odd && r2 >= CFI_NUM_REGS) {
					uleb_rewrite(rp, rn, r1 < CFI_NUM_REGS ? (uint8_t)r1 : 0);
					fixed++;
				}
				break;
			case 0x10: /* expression: reg, then a block like def_cfa_expression's */
				(void)walk_leb(c, false, &odd, NULL, NULL);
				/* fallthrough */
			case 0x0f: /* def_cfa_expression */
				len = walk_leb(c, false, &odd, NULL, NULL);
				if (len > (uint64_t)(c->end - c->p))
					odd = true;
				else
					c->p += len;
				break;
			case 0x1c: case 0x1d: case 0x2d: case 0x3f:
				/* Unexpected to libunwind, which walks on past them (found by
				 * fuzz.debug_frame: a DW_CFA_register after one indexed its register
				 * array unchecked): the rest of the program becomes DW_CFA_nop. */
				odd = true;
				break;
			default: /* nop, remember/restore_state, what libunwind skips as one byte */
				break;
			}
		}
		if (odd || c->bad) {
			memset(op_p, 0, (size_t)(c->end - op_p));
			return fixed + 1;
		}
	}
	return fixed;
}

struct cie_desc {
	uint64_t off;
	uint8_t fde_enc;
	bool has_z;
};

/* Sanitizes a buffer in .eh_frame form (CIE id 0, FDEs pointing back to their CIE). Returns
 * how many entries it rewrote. */
static unsigned cfi_sanitize(uint8_t *buf, size_t len)
{
	struct cie_desc *cies = NULL;
	size_t nr_cies = 0, cap_cies = 0, off = 0;
	unsigned fixed_entries = 0;

	while (len - off >= 4) {
		struct cur c = { buf + off, buf + len, false };
		uint32_t elen = cur_u32(&c), id;
		size_t entry = off, id_off = off + 4;
		unsigned fixed = 0;

		if (elen == 0 || elen == 0xffffffff || elen > len - off - 4)
			break; /* the terminator, 64-bit, or damaged: libunwind reads no further */
		off += 4 + (size_t)elen;
		if (elen < 4)
			continue;
		c.end = buf + off;
		id = cur_u32(&c);
		if (id == 0) {
			struct cie_desc d = { entry, DW_EH_PE_absptr, false };
			uint8_t version = cur_u8(&c), *rp;
			const uint8_t *aug, *nul;
			uint64_t ra;
			size_t rn;

			aug = c.p;
			nul = memchr(c.p, '\0', (size_t)(c.end - c.p));
			if (!nul)
				continue;
			c.p = nul + 1;
			if (strstr((const char *)aug, "eh"))
				cur_take(&c, NULL, 8);
			(void)cur_uleb(&c);
			(void)cur_sleb(&c);
			if (version == 1) {
				rp = (uint8_t *)c.p;
				ra = cur_u8(&c);
				if (!c.bad && ra >= CFI_NUM_REGS) {
					*rp = 16; /* rip */
					fixed++;
				}
			} else {
				ra = cur_uleb_at(&c, &rp, &rn);
				if (!c.bad && (ra >= CFI_NUM_REGS || rn > 9)) {
					uleb_rewrite(rp, rn, 16);
					fixed++;
				}
			}
			if (aug[0] == 'z') {
				uint64_t alen = cur_uleb(&c);
				const uint8_t *adata = c.p;

				d.has_z = true;
				for (const uint8_t *a = aug + 1; *a && !c.bad; a++) {
					if (*a == 'R') {
						d.fde_enc = cur_u8(&c);
					} else if (*a == 'L') {
						(void)cur_u8(&c);
					} else if (*a == 'P') {
						uint8_t penc = cur_u8(&c);

						if (!enc_size(penc))
							break;
						cur_take(&c, NULL, enc_size(penc));
					} else if (*a != 'S') {
						break;
					}
				}
				c.p = adata;
				if (alen > (uint64_t)(c.end - c.p))
					continue;
				c.p += alen;
			}
			if (c.bad)
				continue;
			fixed += cfi_walk(&c, d.fde_enc);
			if (!util_grow((void **)&cies, &cap_cies, nr_cies + 1, sizeof(*cies)))
				cies[nr_cies++] = d;
		} else {
			size_t lo = 0, hi = nr_cies;
			uint64_t cie_off = id_off - id;
			const struct cie_desc *d = NULL;
			size_t es;

			if (id > id_off)
				continue;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;

				if (cies[mid].off < cie_off)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo < nr_cies && cies[lo].off == cie_off)
				d = &cies[lo];
			if (!d || !(es = enc_size(d->fde_enc)))
				continue; /* libunwind cannot parse it either */
			cur_take(&c, NULL, 2 * es);
			if (d->has_z) {
				uint64_t alen = cur_uleb(&c);

				if (c.bad || alen > (uint64_t)(c.end - c.p))
					continue;
				c.p += alen;
			}
			if (!c.bad)
				fixed += cfi_walk(&c, d->fde_enc);
		}
		if (fixed)
			fixed_entries++;
	}
	free(cies);
	return fixed_entries;
}

/* ---- growable output buffer ---- */

struct obuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

static void ob_put(struct obuf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (util_grow((void **)&b->p, &b->cap, b->len + n, 1)) {
		b->oom = true;
		return;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void ob_u8(struct obuf *b, uint8_t v) { ob_put(b, &v, 1); }
static void ob_u32(struct obuf *b, uint32_t v) { ob_put(b, &v, 4); }
static void ob_u64(struct obuf *b, uint64_t v) { ob_put(b, &v, 8); }

static void ob_uleb(struct obuf *b, uint64_t v)
{
	do {
		uint8_t byte = v & 0x7f;

		v >>= 7;
		ob_u8(b, byte | (v ? 0x80 : 0));
	} while (v);
}

static void ob_sleb(struct obuf *b, int64_t v)
{
	bool more = true;

	while (more) {
		uint8_t byte = v & 0x7f;

		v >>= 7; /* arithmetic shift: gcc and clang define it */
		more = !((v == 0 && !(byte & 0x40)) || (v == -1 && (byte & 0x40)));
		ob_u8(b, byte | (more ? 0x80 : 0));
	}
}

/* ---- modules ---- */

/* Bytes of tables held by every module of every unwinder of this process (the agent has one
 * loop thread; the atomics are for the metrics thread). */
static uint64_t tables_bytes;

static void refuse_n(struct unwinder *u, enum unwind_refusal r, uint64_t n)
{
	if (u && n)
		__atomic_fetch_add(&u->refused[r], n, __ATOMIC_RELAXED);
}

static void refuse(struct unwinder *u, enum unwind_refusal r)
{
	refuse_n(u, r, 1);
}

static void mod_free(void *data)
{
	struct umod *m = data;

	if (!m)
		return;
	__atomic_fetch_sub(&tables_bytes, m->bytes, __ATOMIC_RELAXED);
	for (size_t i = 0; i < m->nr_ext; i++)
		free(m->ext[i].data);
	free(m->loads);
	free(m->dbg);
	free(m);
}

/* Where a module's bytes come from while it is loaded: the file open on fd (pread: a file
 * truncated meanwhile gives a short read, never a fault), or an image in our memory (the
 * vDSO, the fuzzers). */
struct src {
	int fd;
	const uint8_t *mem;
	size_t mem_len;
};

static int src_read(const struct src *s, uint64_t off, void *buf, size_t len)
{
	size_t done = 0;

	if (off > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	if (s->fd < 0) {
		if (off > s->mem_len || len > s->mem_len - off)
			return -EINVAL;
		memcpy(buf, s->mem + off, len);
		return 0;
	}
	while (done < len) {
		ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shorter than its headers say: truncated, or lying */
		done += (size_t)n;
	}
	return 0;
}

/* A malloc'd copy of [off, off + len). */
static int src_copy(const struct src *s, uint64_t off, size_t len, uint8_t **ret)
{
	uint8_t *buf = malloc(len ? len : 1);
	int err;

	if (!buf)
		return -ENOMEM;
	err = src_read(s, off, buf, len);
	if (err) {
		free(buf);
		return err;
	}
	*ret = buf;
	return 0;
}

struct sec {
	uint64_t off, size, addr, flags;
	bool found;
};

/* .eh_frame and .debug_frame from the section headers (none is fine: stripped of them). */
static void find_sections(struct unwinder *u, const struct src *s, const Elf64_Ehdr *eh,
			  struct sec *ret_eh_frame, struct sec *ret_debug_frame)
{
	Elf64_Shdr *sh = NULL;
	char *names = NULL;
	uint64_t names_size;

	if (!eh->e_shoff || !eh->e_shnum ||
	    eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shstrndx >= eh->e_shnum)
		return;
	if (src_copy(s, eh->e_shoff, (size_t)eh->e_shnum * sizeof(*sh), (uint8_t **)&sh))
		goto bad;
	names_size = sh[eh->e_shstrndx].sh_size;
	if (sh[eh->e_shstrndx].sh_type != SHT_STRTAB || names_size > SHSTRTAB_MAX ||
	    src_copy(s, sh[eh->e_shstrndx].sh_offset, (size_t)names_size, (uint8_t **)&names))
		goto bad;
	for (size_t i = 0; i < eh->e_shnum; i++) {
		const char *name = names + sh[i].sh_name;
		struct sec *out;

		if (sh[i].sh_name >= names_size ||
		    !memchr(name, '\0', (size_t)(names_size - sh[i].sh_name)) ||
		    sh[i].sh_type != SHT_PROGBITS)
			continue;
		if (!strcmp(name, ".eh_frame"))
			out = ret_eh_frame;
		else if (!strcmp(name, ".debug_frame"))
			out = ret_debug_frame;
		else
			continue;
		if (out->found)
			continue;
		*out = (struct sec){ sh[i].sh_offset, sh[i].sh_size, sh[i].sh_addr, sh[i].sh_flags,
				     true };
	}
	goto out;
bad:
	refuse(u, UNWIND_REFUSED_BAD_ELF);
out:
	free(sh);
	free(names);
}

/* The file offset of vaddr in a load segment, and the file bytes left in it there. */
static bool vaddr_to_off(const struct umod *m, uint64_t vaddr, uint64_t *ret_off,
			 uint64_t *ret_left)
{
	for (size_t i = 0; i < m->nr_loads; i++) {
		const struct load_seg *s = &m->loads[i];

		if (vaddr >= s->vaddr && vaddr - s->vaddr < s->filesz) {
			*ret_off = s->off + (vaddr - s->vaddr);
			*ret_left = s->filesz - (vaddr - s->vaddr);
			return true;
		}
	}
	return false;
}

/* Copies [off, off + len) of s as an extent, widened to whole 8-byte words when the file has
 * them: libunwind reads aligned words, so the last entry of .eh_frame_hdr's table is read
 * with the 4 bytes after it. */
static int mod_add_extent(struct umod *m, const struct src *s, uint64_t off, uint64_t len)
{
	uint64_t lo = off & ~7ull, hi = (off + len + 7) & ~7ull;
	int err;

	if (m->nr_ext >= sizeof(m->ext) / sizeof(m->ext[0]))
		return -E2BIG;
	err = (lo < off || hi > off + len) ? src_copy(s, lo, (size_t)(hi - lo), &m->ext[m->nr_ext].data) : -EIO;
	if (!err) {
		off = lo;
		len = hi - lo;
	} else {
		err = src_copy(s, off, (size_t)len, &m->ext[m->nr_ext].data);
	}
	if (err)
		return err;
	m->ext[m->nr_ext].off = off;
	m->ext[m->nr_ext].len = (size_t)len;
	m->nr_ext++;
	m->bytes += len;
	__atomic_fetch_add(&tables_bytes, len, __ATOMIC_RELAXED);
	return 0;
}

static int debug_frame_convert(struct unwinder *u, struct umod *m, const uint8_t *df, size_t len);

/* The file's own .debug_frame, zlib-decompressed when SHF_COMPRESSED, converted now. */
static void mod_read_debug_frame(struct unwinder *u, struct umod *m, const struct src *s,
				 const struct sec *df)
{
	uint8_t *raw = NULL, *out = NULL;
	const uint8_t *bytes;
	size_t len;

	m->dbg_state = DBG_NONE;
	if (df->size > DEBUG_FRAME_MAX) {
		refuse(u, UNWIND_REFUSED_DEBUG_FRAME);
		return;
	}
	if (src_copy(s, df->off, (size_t)df->size, &raw)) {
		refuse(u, UNWIND_REFUSED_BAD_ELF);
		return;
	}
	bytes = raw;
	len = (size_t)df->size;
	if (df->flags & SHF_COMPRESSED) {
		Elf64_Chdr ch;
		uLongf out_len;

		if (len < sizeof(ch))
			goto out;
		memcpy(&ch, raw, sizeof(ch));
		/* zlib inflates at most ~1032:1: a larger claim is a lie, refused before any
		 * allocation */
		if (ch.ch_type != ELFCOMPRESS_ZLIB || ch.ch_size > DEBUG_FRAME_MAX ||
		    ch.ch_size / 1032 > len) {
			refuse(u, UNWIND_REFUSED_DEBUG_FRAME);
			goto out;
		}
		out = malloc(ch.ch_size ? (size_t)ch.ch_size : 1);
		out_len = (uLongf)ch.ch_size;
		if (!out || uncompress(out, &out_len, raw + sizeof(ch), len - sizeof(ch)) != Z_OK ||
		    out_len != ch.ch_size)
			goto out;
		bytes = out;
		len = (size_t)out_len;
	}
	if (!debug_frame_convert(u, m, bytes, len) && m->dbg_count)
		m->dbg_state = DBG_READY;
out:
	free(raw);
	free(out);
}

/* Reads, from s, the program headers, .eh_frame_hdr and .eh_frame (copies), and converts the
 * file's .debug_frame if it has one. -ENOEXEC: not a 64-bit little-endian ELF file. */
static int mod_parse(struct unwinder *u, struct umod *m, const struct src *s)
{
	Elf64_Ehdr eh;
	Elf64_Phdr *ph = NULL, hdr = { 0 };
	struct sec eh_frame = { 0 }, debug_frame = { 0 };
	bool has_hdr = false;
	int err = 0;

	if (src_read(s, 0, &eh, sizeof(eh)) || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return -ENOEXEC;
	if (eh.e_phnum > PHDR_MAX || (eh.e_phnum && eh.e_phentsize != sizeof(Elf64_Phdr))) {
		refuse(u, UNWIND_REFUSED_BAD_ELF);
		return -ENOEXEC;
	}
	m->loads = calloc(LOADS_MAX, sizeof(*m->loads));
	if (!m->loads)
		return -ENOMEM;
	if (eh.e_phnum) {
		err = src_copy(s, eh.e_phoff, eh.e_phnum * sizeof(*ph), (uint8_t **)&ph);
		if (err) {
			refuse(u, UNWIND_REFUSED_BAD_ELF);
			return err == -ENOMEM ? err : -ENOEXEC;
		}
	}
	for (size_t i = 0; i < eh.e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && m->nr_loads < LOADS_MAX) {
			m->loads[m->nr_loads++] = (struct load_seg){
				.vaddr = ph[i].p_vaddr, .off = ph[i].p_offset,
				.filesz = ph[i].p_filesz, .flags = ph[i].p_flags,
			};
		} else if (ph[i].p_type == PT_GNU_EH_FRAME && !has_hdr) {
			hdr = ph[i];
			has_hdr = true;
		}
	}
	free(ph);
	find_sections(u, s, &eh, &eh_frame, &debug_frame);

	/* .eh_frame_hdr: version 1, eh_frame_ptr, fde_count, then a table of
	 * (initial location, FDE address) pairs, datarel sdata4, sorted. */
	if (has_hdr && hdr.p_filesz >= 4) {
		uint64_t eh_frame_vaddr, count, eh_off, eh_len;
		const uint8_t *d;
		struct cur c;

		if (hdr.p_filesz > UNWIND_TABLE_MAX) {
			refuse(u, UNWIND_REFUSED_OVERSIZED_TABLE);
			goto debug_frame;
		}
		err = mod_add_extent(m, s, hdr.p_offset, hdr.p_filesz);
		if (err == -ENOMEM)
			return err;
		if (err) {
			refuse(u, UNWIND_REFUSED_BAD_ELF);
			goto debug_frame;
		}
		d = m->ext[0].data + (hdr.p_offset - m->ext[0].off);
		c = (struct cur){ d, d + hdr.p_filesz, false };
		uint8_t version = cur_u8(&c), ptr_enc = cur_u8(&c), count_enc = cur_u8(&c);
		uint8_t table_enc = cur_u8(&c);

		if (version != 1 || table_enc != (DW_EH_PE_datarel | DW_EH_PE_sdata4) ||
		    !read_encoded(&c, ptr_enc, hdr.p_vaddr + 4, hdr.p_vaddr, &eh_frame_vaddr) ||
		    count_enc == DW_EH_PE_omit ||
		    !read_encoded(&c, count_enc, hdr.p_vaddr + (uint64_t)(c.p - d), hdr.p_vaddr,
				  &count) ||
		    !count || count > (uint64_t)(c.end - c.p) / 8)
			goto debug_frame;
		/* .eh_frame: its section, else the rest of the load segment holding it */
		if (eh_frame.found && eh_frame.addr == eh_frame_vaddr) {
			eh_off = eh_frame.off;
			eh_len = eh_frame.size;
		} else if (!vaddr_to_off(m, eh_frame_vaddr, &eh_off, &eh_len)) {
			goto debug_frame;
		}
		if (eh_len > UNWIND_TABLE_MAX - hdr.p_filesz) {
			refuse(u, UNWIND_REFUSED_OVERSIZED_TABLE);
			goto debug_frame;
		}
		if (__atomic_load_n(&tables_bytes, __ATOMIC_RELAXED) + eh_len > UNWIND_TOTAL_MAX) {
			refuse(u, UNWIND_REFUSED_TOTAL_TABLES);
			goto debug_frame;
		}
		err = mod_add_extent(m, s, eh_off, eh_len);
		if (err == -ENOMEM)
			return err;
		if (err) {
			refuse(u, UNWIND_REFUSED_BAD_ELF);
			goto debug_frame;
		}
		refuse_n(u, UNWIND_REFUSED_CFI_REWRITTEN,
			 cfi_sanitize(m->ext[1].data + (eh_off - m->ext[1].off), (size_t)eh_len));
		m->has_hdr = true;
		m->hdr_off = hdr.p_offset;
		m->hdr_vaddr = hdr.p_vaddr;
		m->table_vaddr = hdr.p_vaddr + (uint64_t)(c.p - d);
		m->fde_count = count;
	}
debug_frame:
	if (debug_frame.found)
		mod_read_debug_frame(u, m, s, &debug_frame);
	return 0;
}

/* The load segment holding file offset off, or NULL. */
static const struct load_seg *mod_seg_at_off(const struct umod *m, uint64_t off)
{
	for (size_t i = 0; i < m->nr_loads; i++) {
		const struct load_seg *s = &m->loads[i];

		if (off >= s->off && off - s->off < s->filesz)
			return s;
	}
	return NULL;
}

/* Reads pm's tables from s into its UNWIND slot. A file that is not a 64-bit little-endian
 * ELF file gets an empty slot: it is not read again. */
static void mod_load(struct unwinder *u, struct proccache_module *pm, const struct src *s)
{
	struct proccache_slot *slot = &pm->slots[PROCCACHE_SLOT_UNWIND];
	struct umod *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return; /* tried again at the next capture */
	m->pm = pm;
	err = mod_parse(u, m, s);
	if (err) {
		mod_free(m);
		if (err != -ENOMEM)
			proccache_slot_set(slot, NULL, NULL);
		return;
	}
	proccache_slot_set(slot, m, mod_free);
}

/* The cache's loader: every new module, while the cache holds the file open on fd. */
static void load_tables(void *ctx, struct proccache_module *pm, int fd, const char *root)
{
	struct src s = { .fd = fd, .mem = pm->image, .mem_len = pm->image_size };

	(void)root;
	if (fd < 0 && !pm->image)
		return;
	mod_load(ctx, pm, &s);
}

/* Opens the file of mapping e of pid again, checked to be the very file of pm (device,
 * inode, size, mtime). Returns the fd or -errno. */
static int mod_reopen(struct unwinder *u, pid_t pid, const struct proccache_map *e,
		      const struct proccache_module *pm)
{
	struct procmaps_entry pe = {
		.start = e->start, .end = e->end, .pgoff = e->pgoff, .inode = pm->ino,
		.dev_major = major(pm->dev), .dev_minor = minor(pm->dev), .exec = e->exec,
		.path = (char *)e->path,
	};
	struct stat st;
	int fd;

	if (pm->vdso || !e->path[0])
		return -ENOENT;
	fd = procmaps_open_file(pid, &pe);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_dev != pm->dev ||
	    st.st_ino != pm->ino || st.st_size != pm->size ||
	    st.st_mtim.tv_sec != pm->mtime.tv_sec || st.st_mtim.tv_nsec != pm->mtime.tv_nsec) {
		close(fd);
		return -ESTALE;
	}
	u->stats.table_reopens++;
	return fd;
}

/* The unwind tables of e's module, read at its creation (load_tables), or now for a module
 * the cache made before this unwinder registered its loader. NULL when the file is not a
 * 64-bit little-endian ELF file, or cannot be read. */
static struct umod *mod_get(struct unwinder *u, pid_t pid, const struct proccache_map *e)
{
	struct proccache_module *pm = e->mod;
	struct proccache_slot *slot = &pm->slots[PROCCACHE_SLOT_UNWIND];

	if (!slot->tried) {
		struct src s = { .fd = -1, .mem = pm->image, .mem_len = pm->image_size };

		if (!pm->image)
			s.fd = mod_reopen(u, pid, e, pm);
		if (s.fd >= 0 || pm->image)
			mod_load(u, pm, &s);
		else
			proccache_slot_set(slot, NULL, NULL);
		if (s.fd >= 0)
			close(s.fd);
	}
	return slot->data;
}

/* ---- .debug_frame ---- */

struct cie_map {
	uint64_t old_off, new_off;
};

struct fde_ent {
	uint64_t vaddr, off;
};

static int fde_ent_cmp(const void *a, const void *b)
{
	const struct fde_ent *x = a, *y = b;

	return (x->vaddr > y->vaddr) - (x->vaddr < y->vaddr);
}

static bool in_exec_load(const struct umod *m, uint64_t vaddr)
{
	for (size_t i = 0; i < m->nr_loads; i++) {
		const struct load_seg *s = &m->loads[i];

		if ((s->flags & PF_X) && vaddr >= s->vaddr && vaddr - s->vaddr < s->filesz)
			return true;
	}
	return false;
}

/* The converted offset of the CIE at old_off: cies[] is sorted by old_off (made in file
 * order), so a binary search. UINT64_MAX when there is none. */
static uint64_t cie_lookup(const struct cie_map *cies, size_t n, uint64_t old_off)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cies[mid].old_off < old_off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && cies[lo].old_off == old_off ? cies[lo].new_off : UINT64_MAX;
}

/* Rewrites .debug_frame (32-bit DWARF, 8-byte addresses) into .eh_frame form followed by a
 * sorted table of int32 pairs (vaddr, FDE offset); see the top comment. CIEs with an
 * augmentation and FDEs outside the module's executable segments are dropped; CIEs over
 * CIE_MAX and FDEs over FDE_MAX bytes too (counted), and a result over DEBUG_FRAME_MAX is
 * refused. Two linear passes, CIEs found by binary search: O(n log n). */
static int debug_frame_convert(struct unwinder *u, struct umod *m, const uint8_t *df, size_t len)
{
	struct cie_map *cies = NULL;
	struct fde_ent *fdes = NULL;
	size_t nr_cies = 0, cap_cies = 0, nr_fdes = 0, cap_fdes = 0;
	struct obuf b = { 0 };
	int err = 0;

	for (int pass = 0; pass < 2; pass++) {
		size_t off = 0;

		while (len - off >= 4) {
			struct cur c = { df + off, df + len, false };
			uint32_t elen = cur_u32(&c), id;
			size_t entry = off;

			if (elen == 0xffffffff || elen > len - off - 4)
				break; /* 64-bit DWARF, or damaged */
			off += 4 + (size_t)elen;
			if (elen < 4)
				continue;
			c.end = df + off;
			id = cur_u32(&c);
			if (b.len > DEBUG_FRAME_MAX) {
				refuse(u, UNWIND_REFUSED_DEBUG_FRAME);
				err = -E2BIG;
				goto out;
			}
			if (id == 0xffffffff && pass == 0) {
				uint8_t version = cur_u8(&c);
				uint64_t code_align, ra;
				int64_t data_align;
				size_t hdr;

				if (elen > CIE_MAX) {
					refuse(u, UNWIND_REFUSED_ENTRY);
					continue;
				}
				if ((version != 1 && version != 3 && version != 4) || cur_u8(&c) != 0)
					continue; /* unknown version, or an augmentation */
				if (version == 4 && (cur_u8(&c) != 8 || cur_u8(&c) != 0))
					continue; /* address size 8, no segment selector */
				code_align = cur_uleb(&c);
				data_align = cur_sleb(&c);
				ra = version == 1 ? cur_u8(&c) : cur_uleb(&c);
				if (c.bad)
					continue;
				err = util_grow((void **)&cies, &cap_cies, nr_cies + 1, sizeof(*cies));
				if (err)
					goto out;
				cies[nr_cies++] = (struct cie_map){ entry, b.len };
				hdr = b.len;
				ob_u32(&b, 0); /* length, patched below */
				ob_u32(&b, 0); /* CIE id in .eh_frame */
				ob_u8(&b, ra <= 0xff ? 1 : 3);
				ob_put(&b, "zR", 3);
				ob_uleb(&b, code_align);
				ob_sleb(&b, data_align);
				if (ra <= 0xff)
					ob_u8(&b, (uint8_t)ra);
				else
					ob_uleb(&b, ra);
				ob_uleb(&b, 1);
				ob_u8(&b, DW_EH_PE_pcrel | DW_EH_PE_sdata8);
				ob_put(&b, c.p, (size_t)(c.end - c.p));
				if (!b.oom) {
					uint32_t l = (uint32_t)(b.len - hdr - 4);

					memcpy(b.p + hdr, &l, 4);
				}
			} else if (id != 0xffffffff && pass == 1) {
				uint64_t vaddr = cur_u64(&c), range = cur_u64(&c), cie_new;
				size_t hdr;

				if (c.bad || !range || vaddr >= 0x80000000ull || !in_exec_load(m, vaddr))
					continue;
				cie_new = cie_lookup(cies, nr_cies, id);
				if (elen > FDE_MAX || cie_new == UINT64_MAX) {
					refuse(u, UNWIND_REFUSED_ENTRY);
					continue;
				}
				err = util_grow((void **)&fdes, &cap_fdes, nr_fdes + 1, sizeof(*fdes));
				if (err)
					goto out;
				hdr = b.len;
				fdes[nr_fdes++] = (struct fde_ent){ vaddr, hdr };
				ob_u32(&b, 0);
				ob_u32(&b, (uint32_t)(b.len - cie_new));
				/* PC-relative: target bias + vaddr, field at bias + SYNTH_BASE + b.len */
				ob_u64(&b, vaddr - SYNTH_BASE - b.len);
				ob_u64(&b, range);
				ob_uleb(&b, 0);
				ob_put(&b, c.p, (size_t)(c.end - c.p));
				if (!b.oom) {
					uint32_t l = (uint32_t)(b.len - hdr - 4);

					memcpy(b.p + hdr, &l, 4);
				}
			}
		}
	}
	ob_u32(&b, 0); /* terminator */
	if (b.oom) {
		err = -ENOMEM;
		goto out;
	}
	if (b.len + 8 * (uint64_t)nr_fdes + 8 > DEBUG_FRAME_MAX) {
		refuse(u, UNWIND_REFUSED_DEBUG_FRAME);
		err = -E2BIG;
		goto out;
	}
	refuse_n(u, UNWIND_REFUSED_CFI_REWRITTEN, cfi_sanitize(b.p, b.len));
	if (nr_fdes)
		qsort(fdes, nr_fdes, sizeof(*fdes), fde_ent_cmp);
	while (b.len % 8)
		ob_u8(&b, 0);
	m->dbg_table_off = b.len;
	for (size_t i = 0; i < nr_fdes; i++) {
		ob_u32(&b, (uint32_t)fdes[i].vaddr);
		ob_u32(&b, (uint32_t)fdes[i].off);
	}
	if (b.oom) {
		err = -ENOMEM;
		goto out;
	}
	free(m->dbg);
	m->dbg = b.p;
	m->dbg_size = b.len;
	m->dbg_count = nr_fdes;
	m->bytes += b.len;
	__atomic_fetch_add(&tables_bytes, b.len, __ATOMIC_RELAXED);
	b.p = NULL;
out:
	free(b.p);
	free(cies);
	free(fdes);
	return err;
}

/* Loads m's .debug_frame from its separate debug file, looked up under the process's root
 * first (the file's own .debug_frame was converted at load). Once per module: the file is
 * opened again for its .gnu_debuglink (pread through libelf, never mapped). */
static void mod_load_debug_frame(struct unwinder *u, struct umod *m, pid_t pid,
				 const struct proccache_map *e)
{
	struct elffile_debug dbg = { .fd = -1 };
	char root[64];
	const uint8_t *df;
	size_t dflen;
	bool owned;
	Elf *elf = NULL;
	int fd, err;

	if (m->dbg_state != DBG_UNTRIED)
		return;
	m->dbg_state = DBG_NONE;
	fd = mod_reopen(u, pid, e, m->pm);
	if (fd < 0)
		return;
	elffile_init();
	elf = elf_begin(fd, ELF_C_READ, NULL);
	snprintf(root, sizeof(root), "/proc/%d/root", (int)pid);
	if (!elf || elf_kind(elf) != ELF_K_ELF ||
	    elffile_find_debug(elf, m->pm->dev, m->pm->ino, m->pm->path, root, m->pm->build_id,
			       &dbg))
		goto out;
	err = elffile_section_bytes(dbg.elf, ".debug_frame", DEBUG_FRAME_MAX, &df, &dflen, &owned);
	if (err == -ENOTSUP)
		refuse(u, UNWIND_REFUSED_DEBUG_FRAME);
	if (!err) {
		err = debug_frame_convert(u, m, df, dflen);
		if (owned)
			free((void *)df);
	}
	if (!err && m->dbg_count) {
		log_debug("unwind: %s: .debug_frame from %s", m->pm->path, dbg.path);
		m->dbg_state = DBG_READY;
	}
out:
	elffile_debug_close(&dbg);
	if (elf)
		elf_end(elf);
	close(fd);
}

/* ---- processes ---- */

static void uproc_free(void *data)
{
	struct uproc *up = data;

	if (!up)
		return;
	if (up->as)
		unw_destroy_addr_space(up->as);
	free(up->maps);
	free(up);
}

/* Load bias of a mapping of m at [start, ...) from file offset pgoff. */
static bool map_bias(const struct umod *m, uint64_t start, uint64_t pgoff, uint64_t *ret_bias)
{
	for (size_t i = 0; i < m->nr_loads; i++) {
		const struct load_seg *s = &m->loads[i];
		uint64_t page_off = s->off & ~4095ull;

		if (pgoff >= page_off && pgoff < s->off + (s->filesz ? s->filesz : 1)) {
			*ret_bias = start + s->off - s->vaddr - pgoff;
			return true;
		}
	}
	return false;
}

/* Derives up's mappings from p's capture, when the cache captured p again. */
static int uproc_sync(struct unwinder *u, struct uproc *up, const struct proccache_proc *p)
{
	struct umap *maps;

	if (up->maps && up->gen == p->gen)
		return 0;
	maps = calloc(p->nr_maps ? p->nr_maps : 1, sizeof(*maps));
	if (!maps)
		return -ENOMEM;
	for (size_t i = 0; i < p->nr_maps; i++) {
		const struct proccache_map *e = &p->maps[i];
		struct umap *m = &maps[i];
		struct umod *mod = e->mod ? mod_get(u, p->pid, e) : NULL;

		m->pmap = e;
		m->start = e->start;
		m->end = e->end;
		m->pgoff = e->pgoff;
		if (mod && map_bias(mod, m->start, m->pgoff, &m->bias))
			m->mod = mod;
	}
	free(up->maps);
	up->maps = maps;
	up->nr_maps = p->nr_maps;
	up->gen = p->gen;
	if (up->as)
		unw_flush_cache(up->as, 0, 0);
	return 0;
}

static const struct umap *proc_find_map(const struct uproc *p, uint64_t addr)
{
	size_t lo = 0, hi = p->nr_maps;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < p->maps[mid].start)
			hi = mid;
		else if (addr >= p->maps[mid].end)
			lo = mid + 1;
		else
			return &p->maps[mid];
	}
	return NULL;
}

static size_t count_held(const struct unwinder *u)
{
	struct proccache_proc *p;
	size_t n = 0;

	for (size_t i = 0; (p = proccache_proc_at(u->pc, i)); i++)
		if (p->holders & HOLD)
			n++;
	return n;
}

/* Lets go of the process we used least recently. */
static void release_lru(struct unwinder *u)
{
	struct proccache_proc *p, *lru = NULL;
	uint64_t lru_use = UINT64_MAX;

	for (size_t i = 0; (p = proccache_proc_at(u->pc, i)); i++) {
		const struct uproc *up = p->slots[PROCCACHE_SLOT_UNWIND].data;

		if ((p->holders & HOLD) && (!up || up->last_use < lru_use)) {
			lru = p;
			lru_use = up ? up->last_use : 0;
		}
	}
	if (lru) {
		u->nr_held--;
		proccache_release(u->pc, lru->pid, HOLD);
	}
}

/* The capture of (pid, start_time), made now if needed, and our state for it. */
static int proc_get(struct unwinder *u, pid_t pid, uint64_t start_time,
		    struct proccache_proc **ret_p, struct uproc **ret_up)
{
	struct proccache_proc *p = proccache_find(u->pc, pid);
	struct proccache_slot *slot;
	struct uproc *up;
	bool held;
	int err;

	held = p && (p->holders & HOLD) && (!start_time || p->start_time == start_time);
	if (!held) {
		u->nr_held = count_held(u);
		while (u->nr_held >= UNWIND_MAX_PROCS)
			release_lru(u);
	}
	p = NULL;
	err = proccache_get(u->pc, pid, start_time, HOLD, false, true, &p);
	if (p && !held)
		u->nr_held++;
	if (err)
		return err;
	slot = &p->slots[PROCCACHE_SLOT_UNWIND];
	if (!slot->data) {
		up = calloc(1, sizeof(*up));
		if (!up)
			return -ENOMEM;
		proccache_slot_set(slot, up, uproc_free);
	}
	up = slot->data;
	err = uproc_sync(u, up, p);
	if (err)
		return err;
	up->last_use = ++u->tick;
	*ret_p = p;
	*ret_up = up;
	return 0;
}

/* ---- libunwind accessors ---- */

static int read_module(const struct umap *m, uint64_t addr, unw_word_t *valp)
{
	const struct load_seg *s;
	uint64_t off;

	if (!m->mod)
		return -UNW_EINVAL;
	off = addr - m->start + m->pgoff;
	for (size_t i = 0; i < m->mod->nr_ext; i++) {
		const struct extent *e = &m->mod->ext[i];

		if (off >= e->off && e->len >= sizeof(*valp) && off - e->off <= e->len - sizeof(*valp)) {
			memcpy(valp, e->data + (off - e->off), sizeof(*valp));
			return 0;
		}
	}
	/* A writable segment differs from the file anyway (relocations, data); libunwind reads
	 * one only for the personality routine's pointer of a "zPLR" CIE (C++), which unwinding
	 * does not use: zeros serve. Nothing else of the file is kept. */
	s = mod_seg_at_off(m->mod, off);
	if (!s || !(s->flags & PF_W) || s->off + s->filesz - off < sizeof(*valp))
		return -UNW_EINVAL;
	*valp = 0;
	return 0;
}

static int read_synth(struct unwind_ctx *ctx, uint64_t addr, unw_word_t *valp)
{
	const struct umap *m = ctx->dbg_map;

	if (!m || addr - (m->bias + SYNTH_BASE) > m->mod->dbg_size - sizeof(*valp)) {
		m = NULL;
		for (size_t i = 0; i < ctx->proc->nr_maps; i++) {
			const struct umap *c = &ctx->proc->maps[i];

			if (c->mod && c->mod->dbg_state == DBG_READY &&
			    addr - (c->bias + SYNTH_BASE) <= c->mod->dbg_size - sizeof(*valp)) {
				m = c;
				break;
			}
		}
		if (!m)
			return -UNW_EINVAL;
	}
	memcpy(valp, m->mod->dbg + (addr - (m->bias + SYNTH_BASE)), sizeof(*valp));
	return 0;
}

/* Spends one accessor call of the unwind's budget; false once it is spent. */
static bool ctx_spend(struct unwind_ctx *ctx)
{
	if (ctx->step_calls >= STEP_CALL_BUDGET) {
		ctx->over_budget = true;
		ctx->step_over_budget = true;
		return false;
	}
	if (ctx->calls >= UNWIND_CALL_BUDGET) {
		ctx->over_budget = true;
		return false;
	}
	ctx->calls++;
	ctx->step_calls++;
	return true;
}

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *valp, int write,
		      void *arg)
{
	struct unwind_ctx *ctx = arg;
	const struct umap *m;

	(void)as;
	if (write || !ctx_spend(ctx))
		return -UNW_EINVAL;
	if (addr >= ctx->sp && ctx->stack_len >= sizeof(*valp) &&
	    addr - ctx->sp <= ctx->stack_len - sizeof(*valp)) {
		memcpy(valp, ctx->stack + (addr - ctx->sp), sizeof(*valp));
		return 0;
	}
	if (addr - (SYNTH_BASE - SYNTH_SPAN) < 2 * SYNTH_SPAN)
		return read_synth(ctx, addr, valp);
	m = ctx->last_map;
	if (!m || addr < m->start || addr >= m->end) {
		m = proc_find_map(ctx->proc, addr);
		if (m)
			ctx->last_map = m;
	}
	if (m && addr - m->start <= m->end - m->start - sizeof(*valp) &&
	    read_module(m, addr, valp) == 0)
		return 0;
	ctx->mem_fault = true;
	return -UNW_EINVAL;
}

static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *valp, int write,
		      void *arg)
{
	struct unwind_ctx *ctx = arg;
	const struct unwind_regs *r = ctx->regs;

	(void)as;
	if (!ctx_spend(ctx))
		return -UNW_EINVAL;
	if (write)
		return -UNW_EREADONLYREG;
	switch (reg) {
	case UNW_X86_64_RAX: *valp = r->ax; break;
	case UNW_X86_64_RDX: *valp = r->dx; break;
	case UNW_X86_64_RCX: *valp = r->cx; break;
	case UNW_X86_64_RBX: *valp = r->bx; break;
	case UNW_X86_64_RSI: *valp = r->si; break;
	case UNW_X86_64_RDI: *valp = r->di; break;
	case UNW_X86_64_RBP: *valp = r->bp; break;
	case UNW_X86_64_RSP: *valp = r->sp; break;
	case UNW_X86_64_R8: *valp = r->r8; break;
	case UNW_X86_64_R9: *valp = r->r9; break;
	case UNW_X86_64_R10: *valp = r->r10; break;
	case UNW_X86_64_R11: *valp = r->r11; break;
	case UNW_X86_64_R12: *valp = r->r12; break;
	case UNW_X86_64_R13: *valp = r->r13; break;
	case UNW_X86_64_R14: *valp = r->r14; break;
	case UNW_X86_64_R15: *valp = r->r15; break;
	case UNW_X86_64_RIP: *valp = r->ip; break;
	default:
		return -UNW_EBADREG;
	}
	return 0;
}

static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
			  int need_unwind_info, void *arg)
{
	struct unwind_ctx *ctx = arg;
	struct uproc *p = ctx->proc;
	const struct umap *m;
	unw_dyn_info_t di;
	struct umod *mod;
	int ret;

	if (!ctx_spend(ctx))
		return -UNW_EINVAL;
	m = proc_find_map(p, ip);
	if (!m && proccache_miss_due(ctx->p) && proccache_recapture(ctx->u->pc, ctx->p) == 0 &&
	    uproc_sync(ctx->u, p, ctx->p) == 0) {
		/* new maps: pointers into the old ones are gone */
		ctx->last_map = NULL;
		ctx->dbg_map = NULL;
		m = proc_find_map(p, ip);
	}
	if (!m || !m->mod || m->mod->hostile)
		goto no_info;
	mod = m->mod;
	if (mod->has_hdr) {
		memset(&di, 0, sizeof(di));
		di.start_ip = m->start;
		di.end_ip = m->end;
		di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
		di.u.rti.segbase = m->bias + mod->hdr_vaddr;
		di.u.rti.table_data = m->bias + mod->table_vaddr;
		di.u.rti.table_len = mod->fde_count; /* in words: 8-byte entries */
		ret = dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
		if (ret != -UNW_ENOINFO)
			return ret;
	}
	mod_load_debug_frame(ctx->u, mod, ctx->p->pid, m->pmap);
	if (mod->dbg_state == DBG_READY) {
		memset(&di, 0, sizeof(di));
		di.start_ip = m->start;
		di.end_ip = m->end;
		di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
		di.u.rti.segbase = m->bias + SYNTH_BASE;
		di.u.rti.table_data = m->bias + SYNTH_BASE + mod->dbg_table_off;
		di.u.rti.table_len = mod->dbg_count;
		ctx->dbg_map = m;
		ret = dwarf_search_unwind_table(as, ip, &di, pi, need_unwind_info, arg);
		if (ret != -UNW_ENOINFO)
			return ret;
	}
no_info:
	ctx->no_info = true;
	return -UNW_ENOINFO;
}

static void put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
	(void)as;
	(void)pi;
	(void)arg;
}

static int get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *dilap, void *arg)
{
	(void)as;
	(void)dilap;
	(void)arg;
	return -UNW_ENOINFO;
}

static int access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
			void *arg)
{
	(void)as;
	(void)reg;
	(void)val;
	(void)write;
	(void)arg;
	return -UNW_EINVAL;
}

static int resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
	(void)as;
	(void)c;
	(void)arg;
	return -UNW_EINVAL;
}

static int get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len,
			 unw_word_t *offp, void *arg)
{
	(void)as;
	(void)addr;
	(void)buf;
	(void)len;
	(void)offp;
	(void)arg;
	return -UNW_EINVAL;
}

static unw_accessors_t accessors = {
	.find_proc_info = find_proc_info,
	.put_unwind_info = put_unwind_info,
	.get_dyn_info_list_addr = get_dyn_info_list_addr,
	.access_mem = access_mem,
	.access_reg = access_reg,
	.access_fpreg = access_fpreg,
	.resume = resume,
	.get_proc_name = get_proc_name,
};

/* ---- public API ---- */

int unwinder_new_shared(struct proccache *pc, struct unwinder **ret_u)
{
	struct unwinder *u = calloc(1, sizeof(*u));
	int err;

	if (!u)
		return -ENOMEM;
	if (pc) {
		u->pc = proccache_ref(pc);
	} else {
		err = proccache_new(&u->pc);
		if (err) {
			free(u);
			return err;
		}
	}
	/* the tables are copied while the cache holds each new file open */
	proccache_set_loader(u->pc, PROCCACHE_SLOT_UNWIND, load_tables, u);
	*ret_u = u;
	return 0;
}

int unwinder_new(struct unwinder **ret_u)
{
	return unwinder_new_shared(NULL, ret_u);
}

void unwinder_free(struct unwinder *u)
{
	struct proccache_proc *p;

	if (!u)
		return;
	proccache_set_loader(u->pc, PROCCACHE_SLOT_UNWIND, NULL, NULL);
	for (size_t i = 0; (p = proccache_proc_at(u->pc, i));) {
		/* our state goes now: the address spaces' accessors are ours */
		proccache_slot_set(&p->slots[PROCCACHE_SLOT_UNWIND], NULL, NULL);
		p->slots[PROCCACHE_SLOT_UNWIND].tried = false;
		if (p->holders & HOLD) {
			proccache_release(u->pc, p->pid, HOLD);
			if (proccache_proc_at(u->pc, i) != p)
				continue;
		}
		i++;
	}
	proccache_unref(u->pc);
	free(u);
}

static int unwind_walk(struct unwinder *u, struct proccache_proc *pp, struct uproc *p,
		       const struct unwind_regs *regs, const void *stack, size_t stack_len,
		       uint64_t *ret_pcs, size_t max, size_t *ret_n, bool *ret_truncated);

int unwind_stack(struct unwinder *u, pid_t pid, uint64_t start_time,
		 const struct unwind_regs *regs, const void *stack, size_t stack_len,
		 uint64_t *ret_pcs, size_t max, size_t *ret_n, bool *ret_truncated)
{
	struct proccache_proc *pp;
	struct uproc *p;
	int err;

	if (!u || !regs || !ret_pcs || !max || !ret_n || !ret_truncated || (!stack && stack_len))
		return -EINVAL;
	err = proc_get(u, pid, start_time, &pp, &p);
	if (err)
		return err;
	return unwind_walk(u, pp, p, regs, stack, stack_len, ret_pcs, max, ret_n, ret_truncated);
}

/* unwind_stack() once the process and our state for it are at hand. */
static int unwind_walk(struct unwinder *u, struct proccache_proc *pp, struct uproc *p,
		       const struct unwind_regs *regs, const void *stack, size_t stack_len,
		       uint64_t *ret_pcs, size_t max, size_t *ret_n, bool *ret_truncated)
{
	struct unwind_ctx ctx = { 0 };
	unw_word_t prev_sp, ip, sp;
	unw_cursor_t cursor;
	bool truncated = true;
	size_t n = 0;
	int ret;

	if (!p->as) {
		p->as = unw_create_addr_space(&accessors, 0);
		if (!p->as)
			return -ENOMEM;
		/* Global: Debian's libunwind maps the per-thread policy to it anyway, and no
		 * cache costs more (twice the memory-pool work, and twice the signal-masking
		 * calls that unwind_sigmask.c turns into no-ops). */
		unw_set_caching_policy(p->as, UNW_CACHE_GLOBAL);
		unw_set_cache_size(p->as, AS_CACHE_SIZE, 0);
	}
	ctx.u = u;
	ctx.p = pp;
	ctx.proc = p;
	ctx.regs = regs;
	ctx.stack = stack;
	ctx.sp = regs->sp;
	ctx.stack_len = stack_len;

	ret_pcs[n++] = regs->ip;
	prev_sp = regs->sp;
	unwind_skip_sigmask = true;
	ret = unw_init_remote(&cursor, p->as, &ctx);
	if (ret < 0) {
		log_debug("unwind: pid %d: unw_init_remote: %s", (int)pp->pid, unw_strerror(ret));
		goto done;
	}
	while (n < max) {
		ctx.no_info = false;
		ctx.step_calls = 0;
		ret = unw_step(&cursor);
		if (ctx.over_budget) {
			/* whatever libunwind made of the refusals, the walk ends here; the CFI
			 * evaluated was that of the frame at ret_pcs[n - 1] */
			const struct umap *m = proc_find_map(p, ret_pcs[n - 1] - (n > 1));

			if (ctx.step_over_budget && m && m->mod && !m->mod->hostile) {
				m->mod->hostile = true;
				refuse(u, UNWIND_REFUSED_HOSTILE_CFI);
				log_debug("unwind: %s: CFI of %#" PRIx64 " spent a step's budget: "
					  "its unwind info is not used again", m->mod->pm->path,
					  ret_pcs[n - 1]);
			}
			/* libunwind's register-state cache may hold that CFI: forget it */
			if (ctx.step_over_budget)
				unw_flush_cache(p->as, 0, 0);
			truncated = true;
			break;
		}
		if (ret <= 0 || ctx.no_info) {
			/* 0 after CFI said "no return address": the root. 0 after libunwind's
			 * rbp-based guess, or an error: truncated. */
			truncated = ret < 0 || ctx.no_info;
			if (ctx.no_info)
				u->stats.no_info++;
			break;
		}
		if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 ||
		    unw_get_reg(&cursor, UNW_REG_SP, &sp) < 0)
			break;
		/* the stack grows down: a caller's frame is never below its callee's */
		if (sp < prev_sp || (sp == prev_sp && ip == ret_pcs[n - 1]))
			break;
		ret_pcs[n++] = ip;
		prev_sp = sp;
	}
done:
	unwind_skip_sigmask = false;
	if (ctx.over_budget) {
		u->stats.budget_exhausted++;
		refuse(u, UNWIND_REFUSED_BUDGET);
		truncated = true;
	}
	if (ctx.mem_fault)
		u->stats.mem_faults++;
	u->stats.unwinds++;
	u->stats.frames += n;
	if (truncated)
		u->stats.truncated++;
	*ret_n = n;
	*ret_truncated = truncated;
	return 0;
}

void unwind_refresh(struct unwinder *u, pid_t pid)
{
	if (u)
		proccache_mark_stale(u->pc, pid);
}

void unwind_forget(struct unwinder *u, pid_t pid)
{
	struct proccache_proc *p;

	if (!u)
		return;
	p = proccache_find(u->pc, pid);
	if (!p || !(p->holders & HOLD))
		return;
	u->nr_held--;
	proccache_release(u->pc, pid, HOLD);
}

void unwind_get_stats(const struct unwinder *u, struct unwind_stats *ret_stats)
{
	struct proccache_stats cs;

	*ret_stats = u->stats;
	ret_stats->processes = count_held(u);
	proccache_get_stats(u->pc, &cs);
	ret_stats->modules = cs.modules;
	ret_stats->module_opens = cs.module_opens;
	ret_stats->table_bytes = __atomic_load_n(&tables_bytes, __ATOMIC_RELAXED);
}

const char *unwind_refusal_name(enum unwind_refusal r)
{
	static const char *const names[UNWIND_REFUSED_MAX] = {
		[UNWIND_REFUSED_BUDGET] = "budget",
		[UNWIND_REFUSED_OVERSIZED_TABLE] = "oversized_table",
		[UNWIND_REFUSED_TOTAL_TABLES] = "tables_total",
		[UNWIND_REFUSED_DEBUG_FRAME] = "oversized_debug_frame",
		[UNWIND_REFUSED_ENTRY] = "bad_entry",
		[UNWIND_REFUSED_BAD_ELF] = "bad_elf",
		[UNWIND_REFUSED_HOSTILE_CFI] = "hostile_cfi",
		[UNWIND_REFUSED_CFI_REWRITTEN] = "cfi_rewritten",
	};

	return (unsigned)r < UNWIND_REFUSED_MAX ? names[r] : "unknown";
}

uint64_t unwind_refused(const struct unwinder *u, enum unwind_refusal r)
{
	if (!u || (unsigned)r >= UNWIND_REFUSED_MAX)
		return 0;
	return __atomic_load_n(&u->refused[r], __ATOMIC_RELAXED);
}

/* ---- fuzzing entry points (unwind_fuzz.h) ---- */

/* Unwinds a few snapshots of a process that maps m (its mappings in maps, sorted, disjoint),
 * from each PC of pcs, over a stack whose words are those PCs again (so walks go on). */
static void fuzz_walk(struct umod *m, struct umap *maps, size_t nr_maps, const uint64_t *pcs,
		      size_t nr_pcs)
{
	struct unwinder u = { 0 };
	struct proccache_proc pp = { .gone = true }; /* never re-read */
	struct uproc up = { .maps = maps, .nr_maps = nr_maps };
	uint64_t stack[256], out[128];
	struct unwind_regs regs = { 0 };
	bool truncated;
	size_t n;

	(void)m;
	for (size_t i = 0; i < sizeof(stack) / sizeof(stack[0]); i++)
		stack[i] = nr_pcs ? pcs[i % nr_pcs] + 1 : 0;
	for (size_t i = 0; i < nr_pcs; i++) {
		regs.ip = pcs[i];
		regs.sp = 0x7ff000000000ull;
		regs.bp = regs.sp + 64;
		(void)unwind_walk(&u, &pp, &up, &regs, stack, sizeof(stack), out, 128, &n,
				  &truncated);
	}
	if (up.as)
		unw_destroy_addr_space(up.as);
}

static int fuzz_map_cmp(const void *a, const void *b)
{
	const struct umap *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

int unwind_fuzz_tables(const void *img, size_t len)
{
	struct proccache_module pm = { .path = (char *)"fuzz" };
	struct src s = { .fd = -1, .mem = img, .mem_len = len };
	struct umap maps[LOADS_MAX];
	uint64_t pcs[8];
	size_t nr_maps = 0, nr_pcs = 0;
	struct umod *m = calloc(1, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	m->pm = &pm;
	err = mod_parse(NULL, m, &s);
	if (err)
		goto out;
	if (m->dbg_state == DBG_UNTRIED)
		m->dbg_state = DBG_NONE; /* no debug file to look up */
	/* one mapping per PT_LOAD, at its vaddr (bias 0), the overlapping ones dropped */
	for (size_t i = 0; i < m->nr_loads; i++) {
		const struct load_seg *l = &m->loads[i];
		uint64_t start = l->vaddr & ~4095ull, end = l->vaddr + l->filesz;

		if (!l->filesz || end < l->vaddr || end > (1ull << 47) ||
		    (l->off & 4095) != (l->vaddr & 4095))
			continue;
		maps[nr_maps++] = (struct umap){ .start = start, .end = end,
						 .pgoff = l->off & ~4095ull, .mod = m };
	}
	qsort(maps, nr_maps, sizeof(maps[0]), fuzz_map_cmp);
	for (size_t i = 1; i < nr_maps;) {
		if (maps[i].start < maps[i - 1].end) {
			memmove(&maps[i], &maps[i + 1], (nr_maps - i - 1) * sizeof(maps[0]));
			nr_maps--;
		} else {
			i++;
		}
	}
	/* PCs: the first and last functions of each table, and each mapping's start */
	if (m->has_hdr && m->nr_ext) {
		const struct extent *e = &m->ext[0];
		uint64_t t = m->table_vaddr - m->hdr_vaddr + (m->hdr_off - e->off);

		for (uint64_t k = 0; k < 2 && nr_pcs < 8; k++) {
			uint64_t idx = k ? m->fde_count - 1 : 0;
			int32_t loc;

			if (t + 8 * idx + 4 > e->len)
				break;
			memcpy(&loc, e->data + t + 8 * idx, 4);
			pcs[nr_pcs++] = m->hdr_vaddr + (uint64_t)(int64_t)loc + 1;
		}
	}
	if (m->dbg_state == DBG_READY) {
		for (uint64_t k = 0; k < 2 && nr_pcs < 8; k++) {
			uint64_t idx = k ? m->dbg_count - 1 : 0;
			uint32_t loc;

			memcpy(&loc, m->dbg + m->dbg_table_off + 8 * idx, 4);
			pcs[nr_pcs++] = loc + 1ull;
		}
	}
	for (size_t i = 0; i < nr_maps && nr_pcs < 8; i++)
		pcs[nr_pcs++] = maps[i].start;
	fuzz_walk(m, maps, nr_maps, pcs, nr_pcs);
out:
	mod_free(m);
	return err;
}

int unwind_fuzz_debug_frame(const void *df, size_t len)
{
	struct proccache_module pm = { .path = (char *)"fuzz" };
	struct umap map = { .start = 0x1000, .end = 0x80000000ull };
	struct umod *m = calloc(1, sizeof(*m));
	uint64_t pcs[4];
	size_t nr_pcs = 0;
	int err;

	if (!m)
		return -ENOMEM;
	m->pm = &pm;
	m->loads = calloc(1, sizeof(*m->loads));
	if (!m->loads) {
		err = -ENOMEM;
		goto out;
	}
	m->loads[0] = (struct load_seg){ .vaddr = 0, .off = 0, .filesz = 0x80000000ull,
					 .flags = PF_R | PF_X };
	m->nr_loads = 1;
	m->dbg_state = DBG_NONE;
	err = debug_frame_convert(NULL, m, df, len);
	if (err || !m->dbg_count)
		goto out;
	m->dbg_state = DBG_READY;
	map.mod = m;
	map.pgoff = 0x1000;
	for (uint64_t k = 0; k < 3; k++) {
		uint64_t idx = k == 0 ? 0 : k == 1 ? m->dbg_count / 2 : m->dbg_count - 1;
		uint32_t loc;

		memcpy(&loc, m->dbg + m->dbg_table_off + 8 * idx, 4);
		pcs[nr_pcs++] = loc + 1ull;
	}
	fuzz_walk(m, &map, 1, pcs, nr_pcs);
out:
	if (!err)
		err = m->dbg_count > INT_MAX ? INT_MAX : (int)m->dbg_count;
	mod_free(m);
	return err;
}
