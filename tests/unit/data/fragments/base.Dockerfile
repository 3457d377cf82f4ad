# A stand-in OS fragment for the corpus: the interpreter of the cell.
RUN echo "python {{ python }}"
