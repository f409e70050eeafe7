/* Stub CUDA driver (libcuda.so.1): every entry point reports CUDA_ERROR_NO_DEVICE (100).
   Lets a CUDA-linked libmxnet.so load on a machine without an NVIDIA driver. */
#include <stddef.h>
#define NODEV 100 /* CUDA_ERROR_NO_DEVICE */
#define STUB(name) int name() { return NODEV; }
/* imported directly by libmxnet.so (nm -D --undefined-only | grep ' cu') */
STUB(cuDeviceGet) STUB(cuDevicePrimaryCtxRetain) STUB(cuGraphKernelNodeGetParams)
STUB(cuGraphNodeGetType) STUB(cuLaunchKernel) STUB(cuModuleGetFunction)
STUB(cuModuleLoadData) STUB(cuModuleLoadDataEx) STUB(cuModuleUnload)
/* looked up by libcudart (dlopen/dlsym) and by device-query code */
STUB(cuInit) STUB(cuDeviceGetCount) STUB(cuGetProcAddress) STUB(cuGetProcAddress_v2)
STUB(cuGetExportTable) STUB(cuDeviceGetAttribute) STUB(cuDeviceGetName)
STUB(cuDeviceTotalMem_v2) STUB(cuDevicePrimaryCtxRelease) STUB(cuCtxGetCurrent)
STUB(cuCtxSetCurrent)
#ifdef STUB_DRIVER_VERSION  /* variant B: claim a CUDA 11.x driver */
int cuDriverGetVersion(int *v) { if (!v) return 1; *v = STUB_DRIVER_VERSION; return 0; }
#else                       /* variant A (default): no driver at all */
int cuDriverGetVersion(int *v) { if (v) *v = 0; return NODEV; }
#endif
int cuGetErrorString(int e, const char **s) {
  if (!s) return 1; *s = e == NODEV ? "no CUDA-capable device is detected (stub libcuda.so.1)"
                                    : "unknown error (stub libcuda.so.1)"; return 0; }
int cuGetErrorName(int e, const char **s) {
  if (!s) return 1; *s = e == NODEV ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_UNKNOWN"; return 0; }
