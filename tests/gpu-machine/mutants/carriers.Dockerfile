# Every carrier mutant in one image, where programs would keep them: shared objects in a library
# directory, executables on PATH, cubins, fat binaries and PTX files as data a program loads at run time.
FROM debian:trixie-slim
COPY files/libimx_*.so /usr/local/lib/imagematrix-mutants/
COPY files/imx_exe_sm86 files/imx_exe_sm90 /usr/local/bin/
COPY files/*.cubin files/*.fatbin files/*.ptx /usr/local/share/imagematrix-mutants/
