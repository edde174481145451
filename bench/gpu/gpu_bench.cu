// gpu_bench: the CUDA workload for run_gpu_bench.sh.
//
//   gpu_bench split        kernels of known relative durations (alpha 60%, beta 30%, gamma 10%
//                          of spin cycles) from three call sites via <<<>>> (CUDA 13:
//                          __cudaLaunchKernel), delta via cuLaunchKernel (driver API), a
//                          captured graph replayed (graph_k1, graph_k2), a memcpy and a memset.
//                          Prints CUDA-event timings per kernel as JSON on stdout.
//   gpu_bench launchbound N  N tiny kernels back to back; prints host ns per launch.
//
// Built with frame pointers so that launch stacks reach main without DWARF.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
	fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)

__device__ void spin(long long cycles)
{
	long long t0 = clock64();
	while (clock64() - t0 < cycles)
		;
}
__global__ void alpha_kernel(long long c) { spin(c); }
__global__ void beta_kernel(long long c) { spin(c); }
__global__ void gamma_kernel(long long c) { spin(c); }
__global__ void delta_kernel(long long c) { spin(c); }
__global__ void graph_k1(long long c) { spin(c); }
__global__ void graph_k2(long long c) { spin(c); }
__global__ void tiny_kernel(int *p) { if (p) *p = 1; }

static const long long UNIT = 200000; // cycles: ~0.1 ms at ~2 GHz
static cudaStream_t stream;

struct timing { cudaEvent_t a, b; float ms; };

static void tbegin(timing *t) { CK(cudaEventCreate(&t->a)); CK(cudaEventCreate(&t->b)); CK(cudaEventRecord(t->a, stream)); }
static void tend(timing *t) { CK(cudaEventRecord(t->b, stream)); CK(cudaEventSynchronize(t->b)); CK(cudaEventElapsedTime(&t->ms, t->a, t->b)); }

__attribute__((noinline)) static void launch_alpha(int n) { for (int i = 0; i < n; i++) alpha_kernel<<<1, 1, 0, stream>>>(6 * UNIT); }
__attribute__((noinline)) static void launch_beta(int n) { for (int i = 0; i < n; i++) beta_kernel<<<1, 1, 0, stream>>>(3 * UNIT); }
__attribute__((noinline)) static void launch_gamma(int n) { for (int i = 0; i < n; i++) gamma_kernel<<<1, 1, 0, stream>>>(1 * UNIT); }

__attribute__((noinline)) static void launch_delta_driver(int n)
{
	cudaFunction_t f;
	long long c = 2 * UNIT;
	void *args[] = { &c };

	CK(cudaGetFuncBySymbol(&f, (const void *)delta_kernel));
	for (int i = 0; i < n; i++)
		if (cuLaunchKernel((CUfunction)f, 1, 1, 1, 1, 1, 1, 0, (CUstream)stream, args, NULL) != CUDA_SUCCESS) {
			fprintf(stderr, "cuLaunchKernel failed\n");
			exit(1);
		}
}

__attribute__((noinline)) static void capture_graph(cudaGraphExec_t *exec)
{
	cudaGraph_t g;

	CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
	graph_k1<<<1, 1, 0, stream>>>(2 * UNIT);
	graph_k2<<<1, 1, 0, stream>>>(1 * UNIT);
	CK(cudaStreamEndCapture(stream, &g));
	CK(cudaGraphInstantiate(exec, g, 0));
}

__attribute__((noinline)) static void replay_graph(cudaGraphExec_t exec, int n)
{
	for (int i = 0; i < n; i++)
		CK(cudaGraphLaunch(exec, stream));
}

static int split(void)
{
	const int N = 200;
	timing ta, tb, tc, td, tg;
	cudaGraphExec_t exec;
	void *d, *h;

	CK(cudaStreamCreate(&stream));
	// Warm-up: lazy loading and CUPTI's first-launch instrumentation are not measured.
	launch_alpha(1); launch_beta(1); launch_gamma(1); launch_delta_driver(1);
	CK(cudaStreamSynchronize(stream));
	capture_graph(&exec);
	replay_graph(exec, 1);
	CK(cudaStreamSynchronize(stream));

	tbegin(&ta); launch_alpha(N); tend(&ta);
	tbegin(&tb); launch_beta(N); tend(&tb);
	tbegin(&tc); launch_gamma(N); tend(&tc);
	tbegin(&td); launch_delta_driver(N); tend(&td);
	tbegin(&tg); replay_graph(exec, N); tend(&tg);

	CK(cudaMalloc(&d, 64 << 20));
	CK(cudaMallocHost(&h, 64 << 20));
	CK(cudaMemcpyAsync(d, h, 64 << 20, cudaMemcpyHostToDevice, stream));
	CK(cudaMemsetAsync(d, 0, 64 << 20, stream));
	CK(cudaStreamSynchronize(stream));
	printf("{\"n\":%d,\"alpha_ms\":%.3f,\"beta_ms\":%.3f,\"gamma_ms\":%.3f,"
	       "\"delta_ms\":%.3f,\"graph_ms\":%.3f,\"warmup\":{\"alpha\":1,\"beta\":1,\"gamma\":1,"
	       "\"delta\":1,\"graph\":1}}\n", N, ta.ms, tb.ms, tc.ms, td.ms, tg.ms);
	CK(cudaFree(d));
	CK(cudaFreeHost(h));
	return 0;
}

__attribute__((noinline)) static void tiny_loop(int n)
{
	for (int i = 0; i < n; i++)
		tiny_kernel<<<1, 1, 0, stream>>>(NULL);
}

static int launchbound(int n)
{
	struct timespec t0, t1;

	CK(cudaStreamCreate(&stream));
	tiny_loop(1000); // warm-up
	CK(cudaStreamSynchronize(stream));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tiny_loop(n);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CK(cudaStreamSynchronize(stream));
	double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
	printf("{\"launches\":%d,\"ns_per_launch\":%.1f}\n", n, ns / n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "split"))
		return split();
	if (argc >= 2 && !strcmp(argv[1], "launchbound"))
		return launchbound(argc >= 3 ? atoi(argv[2]) : 10000);
	fprintf(stderr, "usage: %s split | launchbound [N]\n", argv[0]);
	return 2;
}
