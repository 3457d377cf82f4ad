# The example's devel image (torch 2.15, Triton 3.9) with TRITON_PTXAS_PATH at CUDA 11.7's ptxas, which
# predates Hopper and Blackwell: the oracle predicts torch.compile ❌ there; on the GPU machine the same
# ptxas under the machine's Triton failed on an H100 ("Value 'sm_90a' is not defined").
FROM imagematrix/example:cu13.2-py3.13-devel
COPY ptxas-11.7 /opt/ptxas-11.7/ptxas
ENV TRITON_PTXAS_PATH=/opt/ptxas-11.7/ptxas
