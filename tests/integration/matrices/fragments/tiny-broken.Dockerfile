RUN echo "broken: fail={{ options.fail }}"{% if options.fail %} && echo "failing on purpose" >&2 && exit 3{% endif %}

