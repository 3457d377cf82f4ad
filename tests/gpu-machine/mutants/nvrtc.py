"""Compile a CUDA source with the NVRTC of this interpreter's nvidia-cuda-nvrtc wheel: PTX for a compute_XY
architecture, a cubin for an sm_XY one. python nvrtc.py SOURCE OUT --gpu-architecture=ARCH"""

import ctypes
import glob
import os
import sys

import nvidia

lib = ctypes.CDLL(glob.glob(os.path.join(nvidia.__path__[0], "cu13", "lib", "libnvrtc.so.13*"))[0])
src, out, *opts = sys.argv[1:]
prog = ctypes.c_void_p()
with open(src, "rb") as f:
    code = f.read()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), code, b"kernel.cu", 0, None, None) == 0
args = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
rc = lib.nvrtcCompileProgram(prog, len(opts), args)
size = ctypes.c_size_t()
lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
log = ctypes.create_string_buffer(size.value)
lib.nvrtcGetProgramLog(prog, log)
if rc != 0:
    sys.exit(f"nvrtc: {rc}: {log.value.decode()}")
cubin = any(o.split("=")[-1].startswith("sm_") for o in opts)
get_size, get = (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
get_size(prog, ctypes.byref(size))
buf = ctypes.create_string_buffer(size.value)
get(prog, buf)
data = buf.raw if cubin else buf.value
with open(out, "wb") as f:
    f.write(data)
print(f"{out}: NVRTC {' '.join(opts)} ({len(data)} bytes)")
