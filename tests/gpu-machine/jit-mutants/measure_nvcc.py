"""In the nvcc-mismatch mutant: a CUDA extension built by load_inline (JIT) and by setup.py (BuildExtension),
with nvcc 13.0 as CUDA_HOME beside torch 2.10.0 (CUDA 12.8). Prints what each did."""

import os
import pathlib
import subprocess
import sys
import textwrap

os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"  # no GPU here: the architecture is given, not detected
from torch.utils.cpp_extension import load_inline

try:
    load_inline(
        "imx_ext",
        cpp_sources="void f();",
        cuda_sources="__global__ void k(){} void f(){k<<<1,1>>>();}",
        functions=["f"],
        build_directory="/tmp",
        verbose=False,
    )
    print("load_inline: built")
except Exception as exc:
    print(f"load_inline refused: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
d = pathlib.Path("/tmp/ext")
d.mkdir(exist_ok=True)
(d / "k.cu").write_text("__global__ void k(){}\nvoid f(){k<<<1,1>>>();}\n")
(d / "m.cpp").write_text(
    '#include <torch/extension.h>\nvoid f();\nPYBIND11_MODULE(TORCH_EXTENSION_NAME, m){m.def("f", &f);}\n'
)
(d / "setup.py").write_text(
    textwrap.dedent("""
        from setuptools import setup
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
        setup(name="imx_ext2", ext_modules=[CUDAExtension("imx_ext2", ["m.cpp", "k.cu"])],
              cmdclass={"build_ext": BuildExtension})
    """)
)
done = subprocess.run([sys.executable, "setup.py", "build_ext"], cwd=d, capture_output=True, text=True)
said = [line for line in (done.stdout + done.stderr).splitlines() if "mismatch" in line or "Error" in line]
print("setup.py build_ext:", "built" if done.returncode == 0 else f"refused: {(said or ['?'])[-1][:300]}")
