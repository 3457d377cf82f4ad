RUN echo "{{ stage }}" > /quick
