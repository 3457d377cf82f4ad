"""imagematrix: build, test and report matrices of PyTorch + CUDA Docker images."""

__version__ = "0.1.0"
