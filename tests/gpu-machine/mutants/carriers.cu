// A CUDA executable: launches imx_fill (kernel.cu) through the runtime API and prints one JSON line, as the
// launch probe does for a file of device code: {"ok": true} or the runtime's error.
#include <cstdio>
#include <cuda_runtime.h>
extern "C" __global__ void imx_fill(int *out, int value) { out[threadIdx.x] = value + threadIdx.x; }
int main() {
  int *d = nullptr, h[32];
  cudaError_t rc = cudaMalloc(&d, sizeof h);
  if (rc == cudaSuccess) { imx_fill<<<1, 32>>>(d, 1000); rc = cudaGetLastError(); }
  if (rc == cudaSuccess) rc = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
  bool ok = rc == cudaSuccess;
  for (int i = 0; ok && i < 32; i++) ok = h[i] == 1000 + i;
  std::printf("{\"ok\": %s, \"code\": %d, \"error\": \"%s\"}\n", ok ? "true" : "false", (int)rc,
              rc == cudaSuccess ? "" : cudaGetErrorName(rc));
  return ok ? 0 : 1;
}
