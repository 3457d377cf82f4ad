"""What a container sees of the GPU: libcuda (and where it was loaded from), cuInit, the driver's CUDA
version and kernel module, each device's name and compute capability. Stdlib only (ctypes): `invoke
doctor` runs this file's text with `python -c` inside an image that is already on the host, before
anything is built.
Prints one JSON object.
"""

from __future__ import annotations

import ctypes
import json
import re

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


def kernel_module(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version ('... Kernel Module  580.159.04 ...')."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def loaded_path(stem: str) -> str | None:
    """Where this process loaded a library from (the host's driver, or a forward-compatibility copy)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(maxsplit=5)[-1].strip() if len(line.split()) >= 6 else ""
                if stem in path.rsplit("/", 1)[-1]:
                    return path
    except OSError:
        pass
    return None


def probe() -> dict:
    out: dict = {"libcuda": None, "cuInit": None, "driver_cuda": None, "driver": None, "devices": [], "error": None}
    try:
        with open("/proc/driver/nvidia/version") as f:
            out["driver"] = kernel_module(f.read())
    except OSError:
        pass
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        out["error"] = f"libcuda.so.1 cannot be loaded: {exc}"
        return out
    out["libcuda"] = loaded_path("libcuda.so") or True
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
        out["driver_cuda"] = version.value
    out["cuInit"] = rc = int(lib.cuInit(0))
    if rc != 0:
        name = ctypes.c_char_p()
        lib.cuGetErrorName(rc, ctypes.byref(name))
        out["error"] = f"cuInit(0) returned {rc} ({(name.value or b'?').decode()})"
        return out
    count = ctypes.c_int(0)
    lib.cuDeviceGetCount(ctypes.byref(count))
    for i in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGet(ctypes.byref(dev), i)
        lib.cuDeviceGetName(buf, len(buf), dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        out["devices"].append(
            {
                "index": i,
                "name": buf.value.decode(errors="replace"),
                "compute_capability": f"{major.value}.{minor.value}",
            }
        )
    return out


if __name__ == "__main__":
    print(json.dumps(probe()))
