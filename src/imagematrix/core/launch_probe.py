"""Load a file's device code on the GPU and launch one kernel of it, through libcuda alone.

Stdlib only (ctypes): it runs inside any image with a Python, the way `invoke doctor` runs
``driver_probe``. For each file, its device code is handed to ``cuModuleLoadData``, which picks the
SASS for this GPU or JIT-compiles its PTX: a host ELF object's section ``.nv_fatbin`` (the fat binary
nvcc embeds), or the whole file when it is a cubin (an ELF for the CUDA machine), a fat binary (by its
magic) or PTX text (loaded NUL-terminated, as ``cuModuleLoad`` does); then the kernel
``imx_fill`` (the mutants' one kernel) runs once and its output is checked. The driver's answer is the
measured outcome: 0 (it ran), 209 (CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image for this GPU), 222
(CUDA_ERROR_UNSUPPORTED_PTX_VERSION: PTX newer than this driver can JIT) or another CUresult.

    python3 launch_probe.py FILE [FILE ...]     -> one JSON object per line
"""

from __future__ import annotations

import ctypes
import json
import struct
import sys

KERNEL = b"imx_fill"
THREADS = 32
VALUE = 1000


def section(path: str, name: str = ".nv_fatbin") -> bytes | None:
    """The bytes of one section of a 64-bit little-endian ELF file, or None when it has none."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    for h in headers:
        start = names_at + h[0]
        if data[start : data.index(b"\0", start)].decode() == name:
            return data[h[4] : h[4] + h[5]]
    return None


EM_CUDA = 190
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


def device_code(path: str) -> bytes | None:
    """What ``cuModuleLoadData`` is given for this file, or None when it holds no device code."""
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] == b"\x7fELF" and len(head) >= 20 and struct.unpack_from("<H", head, 18)[0] != EM_CUDA:
        return section(path)
    with open(path, "rb") as f:
        data = f.read()
    if head[:4] == b"\x7fELF" or head[:4] == FATBIN_MAGIC:
        return data
    if b".version" in data[:4096] and b".target" in data[:4096]:
        return data + b"\0"
    return None


def _error(lib, rc: int) -> str:
    name = ctypes.c_char_p()
    lib.cuGetErrorName(rc, ctypes.byref(name))
    return (name.value or b"?").decode()


def launch(lib, path: str) -> dict:
    """One file's outcome: {"file", "code", "error", "ok"} (code 0 and the right output: it ran)."""
    out: dict = {"file": path, "code": None, "error": None, "ok": False}
    blob = device_code(path)
    if blob is None:
        out["error"] = "no device code (no .nv_fatbin section, cubin, fat binary or PTX)"
        return out
    module = ctypes.c_void_p()
    buf = ctypes.create_string_buffer(blob, len(blob))
    rc = lib.cuModuleLoadData(ctypes.byref(module), buf)
    out["code"] = rc
    if rc != 0:
        out["error"] = _error(lib, rc)
        return out
    fn = ctypes.c_void_p()
    rc = lib.cuModuleGetFunction(ctypes.byref(fn), module, KERNEL)
    if rc == 0:
        dptr = ctypes.c_uint64()
        lib.cuMemAlloc_v2(ctypes.byref(dptr), THREADS * 4)
        value = ctypes.c_int(VALUE)
        args = (ctypes.c_void_p * 2)(
            ctypes.cast(ctypes.byref(dptr), ctypes.c_void_p), ctypes.cast(ctypes.byref(value), ctypes.c_void_p)
        )
        rc = lib.cuLaunchKernel(fn, 1, 1, 1, THREADS, 1, 1, 0, None, args, None) or lib.cuCtxSynchronize()
        host = (ctypes.c_int * THREADS)()
        if rc == 0:
            rc = lib.cuMemcpyDtoH_v2(host, dptr, THREADS * 4)
        lib.cuMemFree_v2(dptr)
        out["ok"] = rc == 0 and list(host) == [VALUE + i for i in range(THREADS)]
    out["code"] = rc
    out["error"] = None if rc == 0 else _error(lib, rc)
    lib.cuModuleUnload(module)
    return out


def main(paths: list[str]) -> int:
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        print(json.dumps({"error": f"libcuda.so.1 cannot be loaded: {exc}"}))
        return 1
    lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    lib.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t]
    lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
    lib.cuModuleUnload.argtypes = [ctypes.c_void_p]
    lib.cuModuleGetFunction.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_char_p]
    lib.cuLaunchKernel.argtypes = [
        ctypes.c_void_p,
        *[ctypes.c_uint] * 6,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    device, context = ctypes.c_int(), ctypes.c_void_p()
    rc = (
        lib.cuInit(0)
        or lib.cuDeviceGet(ctypes.byref(device), 0)
        or lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device)
        or lib.cuCtxSetCurrent(context)
    )
    if rc:
        print(json.dumps({"error": f"no CUDA context: {_error(lib, rc)} ({rc})"}))
        return 1
    for path in paths:
        print(json.dumps(launch(lib, path)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
