/* alloc_sample.h: byte-interval sampling shared by the BPF alloc collector, the preload library
 * (libember_alloc.so) and the unit tests. Integer-only (BPF has no floating point).
 *
 * Heap profilers sample allocations as a Poisson process over bytes: every byte is a sampling
 * point with probability 1/mean, so the gap between points is exponential with that mean. A
 * countdown holds the bytes left to the next point; an allocation of size s is sampled when it
 * covers a point (probability p = 1 - exp(-s/mean)), and the next gap is drawn afresh
 * (memorylessness makes the overshoot irrelevant). Estimates of the true totals weigh each
 * sample by 1/p (objects) and s/p (bytes): unbiased for every size (Go's scaleHeapSample).
 *
 * alloc_sample_gap() turns 32 random bits u into -ln(u / 2^32) * mean using
 * log2(x) = msb(x) + log2(mantissa) with a 256-entry table of log2(1 + (i + 0.5) / 256) in Q16:
 * the tail reaches 22 * mean (no quantile table clips it) and the mean is exact to ~1e-4. */
#ifndef EMBER_ALLOC_SAMPLE_H
#define EMBER_ALLOC_SAMPLE_H

/* Default mean sampling interval in bytes (jemalloc lg_prof_sample=19, Go MemProfileRate). */
#define ALLOC_SAMPLE_DEFAULT_BYTES (512 * 1024)

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* log2(1 + (i + 0.5) / 256) * 65536, rounded. */
static const __u16 alloc_sample_log2_frac[256] = {
	184, 552, 919, 1284, 1648, 2010, 2371, 2730, 3088, 3445, 3801, 4155,
	4507, 4859, 5209, 5558, 5906, 6252, 6597, 6941, 7283, 7625, 7965, 8304,
	8641, 8978, 9313, 9647, 9980, 10312, 10642, 10972, 11300, 11627, 11953, 12278,
	12602, 12925, 13246, 13567, 13886, 14205, 14522, 14838, 15153, 15467, 15781, 16093,
	16404, 16714, 17023, 17331, 17637, 17943, 18248, 18552, 18856, 19158, 19459, 19759,
	20058, 20356, 20654, 20950, 21245, 21540, 21834, 22126, 22418, 22709, 22999, 23288,
	23577, 23864, 24150, 24436, 24721, 25005, 25288, 25570, 25852, 26132, 26412, 26691,
	26969, 27246, 27523, 27798, 28073, 28347, 28620, 28893, 29164, 29435, 29706, 29975,
	30244, 30511, 30778, 31045, 31310, 31575, 31839, 32103, 32365, 32627, 32888, 33149,
	33409, 33668, 33926, 34184, 34441, 34697, 34952, 35207, 35461, 35715, 35968, 36220,
	36471, 36722, 36972, 37222, 37470, 37719, 37966, 38213, 38459, 38705, 38950, 39194,
	39438, 39681, 39923, 40165, 40406, 40647, 40887, 41126, 41365, 41603, 41841, 42077,
	42314, 42550, 42785, 43019, 43253, 43487, 43720, 43952, 44184, 44415, 44646, 44876,
	45105, 45334, 45562, 45790, 46018, 46244, 46471, 46696, 46921, 47146, 47370, 47593,
	47816, 48039, 48261, 48482, 48703, 48924, 49143, 49363, 49582, 49800, 50018, 50235,
	50452, 50668, 50884, 51100, 51315, 51529, 51743, 51956, 52169, 52382, 52594, 52805,
	53016, 53227, 53437, 53647, 53856, 54064, 54273, 54481, 54688, 54895, 55101, 55307,
	55513, 55718, 55922, 56127, 56330, 56534, 56737, 56939, 57141, 57343, 57544, 57745,
	57945, 58145, 58344, 58543, 58742, 58940, 59138, 59335, 59532, 59729, 59925, 60121,
	60316, 60511, 60706, 60900, 61094, 61287, 61480, 61672, 61865, 62056, 62248, 62439,
	62629, 62820, 63010, 63199, 63388, 63577, 63765, 63953, 64141, 64328, 64515, 64701,
	64887, 65073, 65259, 65444,
};

/* Bytes to the next sampling point: -ln(u / 2^32) * mean for 32 random bits u (at least 1). */
static __always_inline __u64 alloc_sample_gap(__u32 u, __u64 mean)
{
	__u32 x = u | 1, k = 0, idx;
	__u64 neglog2, negln, gap;

	/* k = index of the most significant set bit (bisection: BPF has no clz). */
	if (x >= 1u << 16) { k += 16; x >>= 16; }
	if (x >= 1u << 8) { k += 8; x >>= 8; }
	if (x >= 1u << 4) { k += 4; x >>= 4; }
	if (x >= 1u << 2) { k += 2; x >>= 2; }
	if (x >= 1u << 1) { k += 1; }
	/* The 8 bits after the leading one select the mantissa bucket. */
	x = u | 1;
	idx = k >= 8 ? (x >> (k - 8)) & 0xff : (x << (8 - k)) & 0xff;
	/* -log2(u / 2^32) in Q16, then * ln 2 (45426 / 65536). */
	neglog2 = ((__u64)32 << 16) - (((__u64)k << 16) + alloc_sample_log2_frac[idx & 0xff]);
	negln = (neglog2 * 45426) >> 16;
	gap = (mean * negln) >> 16;
	return gap ? gap : 1;
}

#endif
