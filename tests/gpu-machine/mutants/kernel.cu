// The one kernel every mutant carries: out[i] = value + i for one block of threads.
extern "C" __global__ void imx_fill(int *out, int value) { out[threadIdx.x] = value + threadIdx.x; }
