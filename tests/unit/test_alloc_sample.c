/* Sampling math of allocation profiling (no root): the exponential gaps of alloc_sample.h, the
 * 1/p estimates of alloc_collector_weight() on a synthetic allocation stream sampled exactly as
 * the BPF program and libember_alloc.so do, and the probe-offset walk over real prologues. */
#include <errno.h>
#include <linux/types.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "alloc_collector.h"
#include "alloc_sample.h"
#include "check.h"
#include "x86insn.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static __u32 rand32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (__u32)(rng >> 32);
}

static void test_gap_distribution(void)
{
	const __u64 mean = 512 * 1024;
	const int n = 2000000;
	double sum = 0, above = 0, above3 = 0;

	for (int i = 0; i < n; i++) {
		__u64 g = alloc_sample_gap(rand32(), mean);

		sum += (double)g;
		above += g > mean;
		above3 += g > 3 * mean;
	}
	printf("gap: mean %.4f x, P(>mean) %.4f (e^-1 %.4f), P(>3 mean) %.4f (e^-3 %.4f)\n",
	       sum / n / (double)mean, above / n, exp(-1), above3 / n, exp(-3));
	CHECK(fabs(sum / n / (double)mean - 1.0) < 0.005);
	CHECK(fabs(above / n - exp(-1)) < 0.003);
	CHECK(fabs(above3 / n - exp(-3)) < 0.002);
	/* Extremes: u = 0 and u = 2^32 - 1 stay finite and positive. */
	CHECK(alloc_sample_gap(0, mean) > 20 * mean);
	CHECK(alloc_sample_gap(0xffffffffu, mean) >= 1);
}

/* Three sites with different size mixes; the countdown sampler with 1/p weights must estimate
 * each site's bytes and objects without bias. */
static void test_estimates_unbiased(void)
{
	const __u64 mean = 512 * 1024;
	double true_bytes[3] = { 0 }, true_objs[3] = { 0 }, est_bytes[3] = { 0 }, est_objs[3] = { 0 };
	int64_t remaining = (int64_t)alloc_sample_gap(rand32(), mean);

	for (long i = 0; i < 3000000; i++) {
		int site = (int)(i % 3);
		__u64 size = site == 0 ? 16 + rand32() % 64          /* tiny */
			   : site == 1 ? 1024 + rand32() % 16384    /* medium */
				       : (rand32() % 64 == 0 ? 4 << 20 : 256); /* rare huge */

		true_bytes[site] += (double)size;
		true_objs[site] += 1;
		remaining -= (int64_t)size;
		if (remaining > 0)
			continue;
		remaining = (int64_t)alloc_sample_gap(rand32(), mean);
		est_objs[site] += alloc_collector_weight(size, mean);
		est_bytes[site] += alloc_collector_weight(size, mean) * (double)size;
	}
	for (int s = 0; s < 3; s++) {
		double eb = est_bytes[s] / true_bytes[s] - 1, eo = est_objs[s] / true_objs[s] - 1;

		printf("site %d: %.0f MiB, bytes error %+.2f%%, objects error %+.2f%%\n", s,
		       true_bytes[s] / 1048576, 100 * eb, 100 * eo);
		CHECK(fabs(eb) < 0.05);
		CHECK(fabs(eo) < 0.10);
	}
	/* A sample at least as large as the interval is nearly certain: weight ~1. */
	CHECK(fabs(alloc_collector_weight(16 * mean, mean) - 1.0) < 1e-6);
	CHECK(fabs(alloc_collector_weight(64, mean) - (double)mean / 64) < 1.0);
}

static void test_probe_offset(void)
{
	/* glibc 2.36 free: test %rdi,%rdi; je rel32; push %rbp */
	static const uint8_t glibc_free[] = { 0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0, 0, 0, 0x55 };
	/* glibc 2.36 malloc: push %r12 */
	static const uint8_t glibc_malloc[] = { 0x41, 0x54, 0x55, 0x53 };
	/* glibc 2.36 posix_memalign: cmpb $0,disp32(%rip); push %r12 */
	static const uint8_t glibc_pm[] = { 0x80, 0x3d, 0x01, 0x02, 0x14, 0x00, 0x00, 0x41, 0x54 };
	/* CET build: endbr64; test %rdi,%rdi; je rel8 */
	static const uint8_t cet[] = { 0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x85, 0xff, 0x74, 0x10 };
	/* mov 0x0(%rip),%rax: not known, entry fallback */
	static const uint8_t unknown[] = { 0x48, 0x8b, 0x05, 0, 0, 0, 0 };
	/* truncated test */
	static const uint8_t truncated[] = { 0x48, 0x85 };
	size_t off = 99;

	CHECK(x86insn_uprobe_offset(glibc_free, sizeof(glibc_free), &off) == 0 && off == 3);
	CHECK(x86insn_uprobe_offset(glibc_malloc, sizeof(glibc_malloc), &off) == 0 && off == 0);
	CHECK(x86insn_uprobe_offset(glibc_pm, sizeof(glibc_pm), &off) == 0 && off == 7);
	CHECK(x86insn_uprobe_offset(cet, sizeof(cet), &off) == 0 && off == 7);
	CHECK(x86insn_uprobe_offset(unknown, sizeof(unknown), &off) == -ENOEXEC);
	CHECK(x86insn_uprobe_offset(truncated, sizeof(truncated), &off) == -ENOEXEC);
}

int main(void)
{
	test_gap_distribution();
	test_estimates_unbiased();
	test_probe_offset();
	return check_failures ? 1 : 0;
}
