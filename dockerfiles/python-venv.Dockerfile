# The environment every later fragment installs into: /opt/venv (fragments run `python -m pip`: the
# environment's own pip, never a system one that PEP 668 refuses).
RUN python{{ python }} -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
