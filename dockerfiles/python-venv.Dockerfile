# The environment every later fragment installs into: /opt/venv.
RUN python{{ python }} -m venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_COMPILE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
