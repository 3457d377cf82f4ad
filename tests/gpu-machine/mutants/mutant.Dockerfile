# One mutant shared object (make.sh), where the audit and the launch probe find it.
COPY files/libimx_{{ options.mutant }}.so /usr/local/lib/imagematrix-mutants/
