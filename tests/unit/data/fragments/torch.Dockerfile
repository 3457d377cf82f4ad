RUN echo "torch {{ pin('torch') }}"
