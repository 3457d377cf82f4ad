"""Probes the GPU suite runs in fresh interpreters, each under a timeout.

A hung kernel, a crashing extension or a poisoned CUDA context then costs one
subprocess, not the test session. Run as `python -c <this file's text> NAME
[options]` (so an unprivileged uid needs no access to the suite's folder);
the last stdout line starting with RESULT_MARK holds a JSON report:
{"checks": {check: {"ok": bool, "detail": str}}, "info": {...}}.
Self-contained on purpose: stdlib and torch (plus what the probe is about).
"""

import argparse
import json
import os
import sys
import time
import traceback
import warnings

# Run with -c, the working directory comes first on sys.path: a folder there named like a package (Ray
# leaves /tmp/ray behind) would be imported in its place. Nothing is imported from it.
if sys.path and sys.path[0] == "":
    del sys.path[0]

RESULT_MARK = "IMAGEMATRIX-PROBE-RESULT "


class Report:
    def __init__(self):
        self.checks = {}
        self.info = {"uid": os.geteuid(), "python": sys.version.split()[0]}

    def run(self, name, fn, *args, **kwargs):
        start = time.monotonic()
        try:
            detail = fn(*args, **kwargs)
            self.checks[name] = {"ok": True, "detail": str(detail or "")}
        except Exception as exc:  # the report carries it; the test decides
            text = f"{type(exc).__name__}: {exc}".strip()
            tb = traceback.format_exc(limit=6)
            self.checks[name] = {"ok": False, "detail": text[-4000:], "traceback": tb[-3000:]}
        self.checks[name]["seconds"] = round(time.monotonic() - start, 3)

    def emit(self):
        print(
            RESULT_MARK + json.dumps({"checks": self.checks, "info": self.info}, default=str),
            flush=True,
        )


def _close(actual, expected, rtol, atol, what):
    import torch

    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False, check_device=False)
    except AssertionError as exc:
        raise AssertionError(f"{what} differs from the CPU reference: {exc}") from None


# --------------------------------------------------------------------------
# CUDA runtime and kernels
# --------------------------------------------------------------------------


def probe_kernels(rep, args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch

        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    rep.info.update(
        is_available=available,
        device_count=count,
        init_warnings=[str(w.message) for w in caught if "cuda" in str(w.message).lower()],
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
    )
    if not available:
        return
    dev = torch.device("cuda", 0)
    props = torch.cuda.get_device_properties(dev)
    rep.info.update(
        name=props.name,
        capability=list(torch.cuda.get_device_capability(dev)),
        arch_list=torch.cuda.get_arch_list(),
        compiled_cuda=torch._C._cuda_getCompiledVersion(),
        bf16_supported=torch.cuda.is_bf16_supported(),
        memory_gib=round(props.total_memory / 2**30, 1),
    )
    g = torch.Generator().manual_seed(0)

    def total():
        ones = torch.ones(1 << 20, device=dev)
        got = ones.sum().item()
        assert got == float(1 << 20), f"sum of 2**20 ones on the GPU gave {got}"
        x = torch.randn(4096, generator=g)
        _close(x.to(dev).sum().cpu(), x.double().sum(), 1e-4, 1e-3, "GPU sum")
        return f"sum ok on {props.name}"

    def matmul(dtype, rtol, atol):
        a = torch.randn(512, 512, generator=g).to(dtype)
        b = torch.randn(512, 512, generator=g).to(dtype)
        out = a.to(dev) @ b.to(dev)
        torch.cuda.synchronize()
        assert out.is_cuda and out.dtype == dtype, f"result is {out.dtype} on {out.device}"
        _close(out.double().cpu(), a.double() @ b.double(), rtol, atol, f"cuBLAS {dtype} matmul")
        return f"cuBLAS {dtype} 512x512 matmul matches"

    def conv():
        assert torch.backends.cudnn.is_available(), "torch.backends.cudnn.is_available() is False"
        torch.backends.cudnn.allow_tf32 = False
        x = torch.randn(8, 16, 32, 32, generator=g)
        w = torch.randn(32, 16, 3, 3, generator=g)
        xd = x.to(dev)
        assert torch.backends.cudnn.is_acceptable(xd), "cuDNN does not accept a float32 CUDA tensor"
        out = torch.nn.functional.conv2d(xd, w.to(dev), padding=1)
        torch.cuda.synchronize()
        ref = torch.nn.functional.conv2d(x.double(), w.double(), padding=1)
        _close(out.double().cpu(), ref, 1e-4, 1e-3, "cuDNN conv2d")
        return f"cuDNN {torch.backends.cudnn.version()} conv2d matches"

    rep.run("sum", total)
    rep.run("matmul_fp16", matmul, torch.float16, 5e-3, 5e-2)
    if torch.cuda.is_bf16_supported():
        rep.run("matmul_bf16", matmul, torch.bfloat16, 2e-2, 0.3)
    rep.run("conv_cudnn", conv)


def probe_nvrtc(rep, args):
    import torch

    dev = torch.device("cuda", 0)

    def jiterator():
        fn = torch.cuda.jiterator._create_jit_fn("template <typename T> T imx_fma(T x, T y) { return x * y + T(1); }")
        a, b = torch.randn(4096), torch.randn(4096)
        out = fn(a.to(dev), b.to(dev))
        _close(out.cpu(), a * b + 1, 1e-5, 1e-5, "NVRTC (jiterator) kernel")
        return "jiterator kernel compiled by NVRTC and matches"

    def bad_index():
        n = torch.cuda.device_count()
        try:
            torch.empty(1, device=f"cuda:{n}")
        except (RuntimeError, AssertionError) as exc:
            return f"cuda:{n} raised: {str(exc).splitlines()[0]}"
        raise AssertionError(f"allocating on cuda:{n} (only {n} device(s)) did not raise")

    rep.run("jiterator", jiterator)
    rep.run("bad_device_index", bad_index)


def probe_device_assert(rep, args):
    import torch

    def trip():
        x = torch.zeros(4, device="cuda")
        idx = torch.tensor([40], device="cuda")
        try:
            x[idx] += 1
            torch.cuda.synchronize()
        except RuntimeError as exc:
            text = str(exc)
            if "device-side assert" in text or "out of bounds" in text:
                return text.splitlines()[0]
            raise AssertionError(f"an out-of-bounds index raised something else: {text[:300]}") from None
        raise AssertionError("an out-of-bounds index on the GPU raised nothing: device-side asserts are not reported")

    rep.run("device_assert", trip)


# --------------------------------------------------------------------------
# torch.utils.cpp_extension
# --------------------------------------------------------------------------

CPP_SOURCE = r"""
#include <torch/extension.h>
torch::Tensor imx_cumsum_sq(torch::Tensor x) {
  auto xc = x.contiguous().to(torch::kDouble);
  auto out = torch::empty_like(xc);
  const double* in = xc.data_ptr<double>();
  double* o = out.data_ptr<double>();
  double acc = 0;
  for (int64_t i = 0; i < xc.numel(); ++i) { acc += in[i] * in[i]; o[i] = acc; }
  return out;
}
"""

CUDA_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
__global__ void imx_saxpy_kernel(const float* x, float* y, float a, int64_t n) {
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
torch::Tensor imx_saxpy(torch::Tensor x, torch::Tensor y, double a) {
  TORCH_CHECK(x.is_cuda() && y.is_cuda(), "imx_saxpy needs CUDA tensors");
  auto xc = x.contiguous().to(torch::kFloat);
  auto out = y.contiguous().to(torch::kFloat).clone();
  int64_t n = xc.numel();
  int threads = 256;
  int blocks = (int)((n + threads - 1) / threads);
  imx_saxpy_kernel<<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
      xc.data_ptr<float>(), out.data_ptr<float>(), (float)a, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
"""
CUDA_DECL = "torch::Tensor imx_saxpy(torch::Tensor x, torch::Tensor y, double a);"


def _built_library(build_dir, name):
    for entry in sorted(os.listdir(build_dir)):
        if entry.startswith(name) and entry.endswith(".so"):
            return os.path.join(build_dir, entry)
    return None


def probe_inline(rep, args):
    import torch
    from torch.utils.cpp_extension import load_inline

    build_dir = args.build_dir
    os.makedirs(build_dir, exist_ok=True)
    rep.info.update(build_dir=build_dir, home=os.environ.get("HOME"), torch=torch.__version__)
    g = torch.Generator().manual_seed(0)
    mod = {}

    def build():
        start = time.monotonic()
        kwargs = dict(
            name=args.name,
            cpp_sources=[CPP_SOURCE],
            functions=["imx_cumsum_sq"],
            build_directory=build_dir,
        )
        if args.cuda:
            kwargs.update(
                cpp_sources=[CPP_SOURCE, CUDA_DECL],
                cuda_sources=[CUDA_SOURCE],
                functions=["imx_cumsum_sq", "imx_saxpy"],
            )
        mod["m"] = load_inline(verbose=False, **kwargs)
        rep.info["library"] = _built_library(build_dir, args.name)
        return f"built in {time.monotonic() - start:.1f}s into {build_dir} as uid {os.geteuid()}"

    def cpp():
        x = torch.randn(1000, generator=g)
        _close(mod["m"].imx_cumsum_sq(x), torch.cumsum(x.double() ** 2, 0), 1e-9, 1e-9, "C++ extension")
        return "C++ function matches torch.cumsum"

    def cuda():
        x, y = torch.randn(100_000, generator=g), torch.randn(100_000, generator=g)
        out = mod["m"].imx_saxpy(x.cuda(), y.cuda(), 2.5)
        torch.cuda.synchronize()
        assert out.is_cuda, f"result is on {out.device}"
        _close(out.cpu(), 2.5 * x + y, 1e-6, 1e-6, "CUDA extension kernel")
        return f"CUDA kernel matches on {torch.cuda.get_device_name(0)}"

    def sass():
        lib = rep.info.get("library")
        assert lib, f"no built .so under {build_dir}"
        from torch.utils.cpp_extension import CUDA_HOME

        tool = os.path.join(CUDA_HOME or "/usr/local/cuda", "bin", "cuobjdump")
        if not os.path.exists(tool):
            import shutil

            tool = shutil.which("cuobjdump") or ""
        if not tool:
            rep.info["cuobjdump"] = None
            return "cuobjdump not found"
        import subprocess

        out = subprocess.run([tool, "--list-elf", lib], capture_output=True, text=True, timeout=60)
        rep.info["cuobjdump"] = out.stdout + out.stderr
        rep.info["capability"] = list(torch.cuda.get_device_capability(0))
        return "listed"

    rep.run("build", build)
    if "m" in mod:
        rep.run("cpp", cpp)
        if args.cuda:
            rep.run("cuda", cuda)
            rep.run("sass", sass)


# --------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------


def _fn(x, y):
    import torch

    return torch.nn.functional.gelu(x @ y) * torch.sigmoid(x).sum(-1, keepdim=True) + torch.cos(y)


def probe_compile(rep, args):
    import torch
    import torch._dynamo

    torch._dynamo.config.suppress_errors = False  # a failed compile must raise, never run eager silently
    rep.info.update(
        home=os.environ.get("HOME"),
        triton_cache=os.environ.get("TRITON_CACHE_DIR"),
        inductor_cache=os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
    )
    g = torch.Generator().manual_seed(0)
    device = args.device

    def one(dtype, rtol, atol):
        torch._dynamo.reset()
        x = torch.randn(64, 64, generator=g).to(device, dtype)
        y = torch.randn(64, 64, generator=g).to(device, dtype)
        compiled = torch.compile(_fn, backend="inductor", fullgraph=True, dynamic=False)
        start = time.monotonic()
        out = compiled(x, y)
        if device == "cuda":
            torch.cuda.synchronize()
        took = time.monotonic() - start
        assert out.device.type == device, f"compiled result is on {out.device}"
        _close(out.float(), _fn(x, y).float(), rtol, atol, f"torch.compile ({device}, {dtype})")
        return f"inductor on {device} {dtype} matches eager (first call {took:.1f}s)"

    # fp32 tolerance: inductor may pick another GEMM/summation order than eager (seen: 1.5e-4 on CPU)
    rep.run(f"{device}_fp32", one, torch.float32, 1e-3, 1e-3)
    if device == "cuda":
        rep.run(f"{device}_fp16", one, torch.float16, 1e-2, 1e-2)


def probe_autotune(rep, args):
    import torch
    import torch._dynamo

    torch._dynamo.config.suppress_errors = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    def run():
        torch.manual_seed(0)
        net = (
            torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, padding=1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 16, 3, padding=1),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(16, 10),
            )
            .cuda()
            .eval()
        )
        x = torch.randn(8, 3, 32, 32, device="cuda")
        with torch.no_grad():
            ref = net(x)
            start = time.monotonic()
            out = torch.compile(net, mode="max-autotune")(x)
            torch.cuda.synchronize()
        _close(out, ref, 1e-2, 1e-2, "max-autotune conv net")
        return f"max-autotune conv net matches eager (compile+run {time.monotonic() - start:.1f}s)"

    rep.run("max_autotune", run)


# --------------------------------------------------------------------------
# PyG
# --------------------------------------------------------------------------

PYG_FLAGS = {
    "pyg_lib": "WITH_PYG_LIB",
    "torch_scatter": "WITH_TORCH_SCATTER",
    "torch_sparse": "WITH_TORCH_SPARSE",
    "torch_cluster": "WITH_TORCH_CLUSTER",
    "torch_spline_conv": "WITH_TORCH_SPLINE_CONV",
}
PYG_NAMESPACES = {
    "pyg_lib": "pyg",
    "torch_scatter": "torch_scatter",
    "torch_sparse": "torch_sparse",
    "torch_cluster": "torch_cluster",
    "torch_spline_conv": "torch_spline_conv",
}


def _ext_kernels(name, dev):
    """The extension's CPU kernels against plain-PyTorch references; with ``dev``, its GPU
    kernels against its CPU ones too."""
    import torch

    g = torch.Generator().manual_seed(0)
    on = (lambda t: t.to(dev)) if dev is not None else None
    if name == "torch_scatter":
        import torch_scatter

        src, index = torch.randn(200, 8, generator=g), torch.randint(0, 17, (200,), generator=g)
        refs = {
            "sum": torch.zeros(17, 8).index_add_(0, index, src),
            "max": torch.full((17, 8), float("-inf")).scatter_reduce(0, index[:, None].expand(-1, 8), src, "amax"),
        }
        for reduce, ref in refs.items():
            cpu = torch_scatter.scatter(src, index, dim=0, reduce=reduce, dim_size=17)
            present = torch.isin(torch.arange(17), index)
            _close(cpu[present], ref[present], 1e-5, 1e-5, f"torch_scatter {reduce} (CPU) vs torch")
            if on:
                gpu = torch_scatter.scatter(on(src), on(index), dim=0, reduce=reduce, dim_size=17)
                _close(gpu.cpu(), cpu, 1e-5, 1e-5, f"torch_scatter scatter_{reduce}")
        return "scatter sum/max on CPU match torch" + (", on GPU match CPU" if on else "")
    if name == "torch_sparse":
        import torch_sparse

        index = torch.stack([torch.randint(0, 30, (120,), generator=g), torch.randint(0, 20, (120,), generator=g)])
        value, dense = torch.randn(120, generator=g), torch.randn(20, 5, generator=g)
        a = torch.zeros(30, 20).index_put_((index[0], index[1]), value, accumulate=True)
        cpu = torch_sparse.spmm(index, value, 30, 20, dense)
        _close(cpu, a @ dense, 1e-4, 1e-4, "torch_sparse spmm (CPU) vs dense")
        if on:
            gpu = torch_sparse.spmm(on(index), on(value), 30, 20, on(dense))
            _close(gpu.cpu(), cpu, 1e-4, 1e-4, "torch_sparse spmm")
        return "spmm on CPU matches dense" + (", on GPU matches CPU" if on else "")
    if name == "torch_cluster":
        import torch_cluster

        x, y = torch.randn(64, 3, generator=g), torch.randn(16, 3, generator=g)
        cpu = torch_cluster.knn(x, y, 4)
        as_set = lambda e: sorted(map(tuple, e.t().tolist()))  # noqa: E731
        near = torch.cdist(y, x).topk(4, largest=False).indices
        ref = torch.stack([torch.arange(16).repeat_interleave(4), near.reshape(-1)])
        assert as_set(cpu) == as_set(ref), "torch_cluster knn (CPU) picks other neighbours than cdist"
        if on:
            gpu = torch_cluster.knn(on(x), on(y), 4).cpu()
            assert as_set(cpu) == as_set(gpu), "torch_cluster knn on GPU picks other neighbours than on CPU"
        return "knn on CPU matches cdist" + (", on GPU matches CPU" if on else "")
    if name == "torch_spline_conv":
        import torch_spline_conv

        pseudo = torch.rand(50, 2, generator=g)
        ks, open_ = torch.tensor([5, 5]), torch.tensor([1, 1], dtype=torch.uint8)
        cb, ci = torch_spline_conv.spline_basis(pseudo, ks, open_, 1)
        # B-spline bases form a partition of unity: each row sums to 1.
        _close(cb.sum(-1), torch.ones(50), 1e-5, 1e-5, "torch_spline_conv basis (CPU) row sums")
        if on:
            gb, gi = torch_spline_conv.spline_basis(on(pseudo), on(ks), on(open_), 1)
            _close(gb.cpu(), cb, 1e-5, 1e-5, "torch_spline_conv basis")
            assert torch.equal(gi.cpu(), ci), "torch_spline_conv weight index differs between GPU and CPU"
        return "spline_basis on CPU sums to 1" + (", on GPU matches CPU" if on else "")
    if name == "pyg_lib":
        import pyg_lib

        inputs, ptr = torch.randn(10, 8, generator=g), torch.tensor([0, 4, 10])
        other = torch.randn(2, 8, 6, generator=g)
        cpu = pyg_lib.ops.segment_matmul(inputs, ptr, other)
        ref = torch.cat([inputs[:4] @ other[0], inputs[4:] @ other[1]])
        _close(cpu, ref, 1e-4, 1e-4, "pyg_lib segment_matmul (CPU) vs matmul")
        if on:
            gpu = pyg_lib.ops.segment_matmul(on(inputs), on(ptr), on(other))
            _close(gpu.cpu(), cpu, 1e-3, 1e-3, "pyg_lib segment_matmul")
        return "segment_matmul on CPU matches matmul" + (", on GPU matches CPU" if on else "")
    raise AssertionError(f"no kernel check for {name}")


def probe_pyg(rep, args):
    import importlib
    import importlib.metadata as md

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        import torch_geometric
        import torch_geometric.typing as pyg_typing
    rep.info.update(
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        torch_geometric=torch_geometric.__version__,
        warnings=[
            {
                "category": w.category.__name__,
                "message": str(w.message)[:1500],
                "where": f"{w.filename}:{w.lineno}",
            }
            for w in caught
        ],
        flags={ext: getattr(pyg_typing, flag, None) for ext, flag in PYG_FLAGS.items()},
    )
    versions, cuda_versions, errors = {}, {}, {}
    for ext in args.extensions:
        try:
            versions[ext] = md.version(ext.replace("_", "-"))
        except md.PackageNotFoundError:
            versions[ext] = None
        try:
            importlib.import_module(ext)
            cuda_versions[ext] = int(getattr(torch.ops, PYG_NAMESPACES[ext]).cuda_version())
        except Exception as exc:
            errors[ext] = f"{type(exc).__name__}: {exc}"[:2000]
    rep.info.update(versions=versions, cuda_versions=cuda_versions, import_errors=errors)
    for ext in args.extensions:
        if ext not in errors:
            rep.run(f"cpu_kernels:{ext}", _ext_kernels, ext, None)
            if args.gpu:
                rep.run(f"kernels:{ext}", _ext_kernels, ext, torch.device("cuda", 0))


def probe_pyg_models(rep, args):
    import copy

    import torch
    from torch_geometric.nn import GATConv, GCNConv, SAGEConv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 16, generator=g)
    edge_index = torch.randint(0, 60, (2, 300), generator=g)
    dev = torch.device("cuda", 0)

    def conv(cls, **kw):
        torch.manual_seed(0)
        cpu = cls(16, 8, **kw)
        gpu = copy.deepcopy(cpu).to(dev)
        out_c = cpu(x, edge_index)
        out_g = gpu(x.to(dev), edge_index.to(dev))
        assert out_g.is_cuda, f"{cls.__name__} output on {out_g.device}"
        (out_c**2).sum().backward()
        (out_g**2).sum().backward()
        _close(out_g.detach().cpu(), out_c.detach(), 1e-4, 1e-4, f"{cls.__name__} forward")
        for (n, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters(), strict=True):
            assert pg.grad is not None, f"{cls.__name__}.{n} got no gradient on the GPU"
            _close(pg.grad.cpu(), pc.grad, 1e-3, 1e-3, f"{cls.__name__}.{n} gradient")
        return f"{cls.__name__} forward+backward on GPU match CPU"

    rep.run("GCNConv", conv, GCNConv)
    rep.run("GATConv", conv, GATConv, heads=2, concat=False)
    rep.run("SAGEConv", conv, SAGEConv)

    class GCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = GCNConv(16, 32), GCNConv(32, 4)

        def forward(self, x, ei):
            return self.c2(self.c1(x, ei).relu(), ei)

    if args.sampler:

        def loader():
            from torch_geometric.data import Data
            from torch_geometric.loader import NeighborLoader

            data = Data(x=x, edge_index=edge_index)
            batch = next(iter(NeighborLoader(data, num_neighbors=[5, 5], batch_size=8, shuffle=False)))
            batch = batch.to(dev)
            torch.manual_seed(0)
            out = GCN().to(dev)(batch.x, batch.edge_index)
            assert out.is_cuda and out.shape[0] == batch.num_nodes
            return f"NeighborLoader batch of {batch.num_nodes} nodes ran through GCN on the GPU"

        rep.run("NeighborLoader", loader)

    if args.compile:

        def compiled():
            import torch._dynamo

            torch._dynamo.config.suppress_errors = False
            torch.manual_seed(0)
            model = GCN().to(dev).eval()
            xd, ed = x.to(dev), edge_index.to(dev)
            with torch.no_grad():
                ref = model(xd, ed)
                out = torch.compile(model, dynamic=False)(xd, ed)
            _close(out, ref, 1e-4, 1e-4, "torch.compile(GCN)")
            return "torch.compile(GCN) matches eager on the GPU"

        rep.run("compile_GCN", compiled)


# --------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------


def _ray_init():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=80 * 1024 * 1024,
        ignore_reinit_error=True,
    )
    return ray


def probe_ray(rep, args):
    """A local Ray runtime starts, runs a CPU task, and says which GPUs it detects (no torch needed)."""
    ray = _ray_init()
    rep.info["ray"] = ray.__version__
    try:
        rep.info["resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}

        @ray.remote(num_cpus=1)
        def cpu_task(n):
            return sum(range(n))

        rep.run("cpu_task", lambda: f"CPU task returned {ray.get(cpu_task.remote(100), timeout=120)}")
    finally:
        ray.shutdown()


def probe_ray_gpu(rep, args):
    """A Ray task that asks for a GPU runs a CUDA kernel through torch."""
    ray = _ray_init()
    rep.info["ray"] = ray.__version__
    try:
        rep.info["resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}

        @ray.remote(num_gpus=1)
        def gpu_task():
            import torch

            x = torch.ones(1024, device="cuda")
            return {
                "sum": float(x.sum().item()),
                "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "name": torch.cuda.get_device_name(0),
            }

        def gpu():
            gpus = rep.info["resources"].get("GPU", 0)
            assert gpus >= 1, f"ray.cluster_resources() has GPU={gpus}: Ray did not detect the GPU"
            out = ray.get(gpu_task.remote(), timeout=180)
            assert out["sum"] == 1024.0, f"GPU task computed {out['sum']}"
            ids, visible = out["gpu_ids"], out["visible"]
            return f"GPU task ran on {out['name']} (ray GPU ids {ids}, CUDA_VISIBLE_DEVICES={visible})"

        rep.run("gpu_task", gpu)
    finally:
        ray.shutdown()


PROBES = {
    "kernels": probe_kernels,
    "nvrtc": probe_nvrtc,
    "device_assert": probe_device_assert,
    "inline": probe_inline,
    "compile": probe_compile,
    "autotune": probe_autotune,
    "pyg": probe_pyg,
    "pyg_models": probe_pyg_models,
    "ray": probe_ray,
    "ray_gpu": probe_ray_gpu,
}


def main(argv):
    parser = argparse.ArgumentParser(prog="gpu_probe")
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--build-dir", default="")
    parser.add_argument("--name", default="imagematrix_probe")
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--sampler", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--extensions", type=lambda s: [e for e in s.split(",") if e], default=[])
    args = parser.parse_args(argv)
    rep = Report()
    try:
        PROBES[args.probe](rep, args)
    except Exception as exc:
        rep.info["fatal"] = f"{type(exc).__name__}: {exc}"[-4000:]
        rep.info["traceback"] = traceback.format_exc(limit=8)[-3000:]
    rep.emit()


if __name__ == "__main__":
    main(sys.argv[1:])
