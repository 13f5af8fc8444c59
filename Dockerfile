# Two stages: the build stage makes wheels of the project and its dependencies (a layer that
# changes only when pyproject.toml does, then one for our code); the runtime stage installs
# them into a slim image and runs as an unprivileged user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip wheel
COPY pyproject.toml README.md ./
# Dependencies first, in their own layer: a code change does not rebuild them.
RUN mkdir -p contracts shared services && touch contracts/__init__.py shared/__init__.py services/__init__.py \
    && pip wheel --no-cache-dir --wheel-dir /wheels . \
    && rm /wheels/oms_shipments-*.whl
COPY contracts ./contracts
COPY shared ./shared
COPY services ./services
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels oms-shipments && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home oms
USER 10001
WORKDIR /tmp
EXPOSE 9100
# /healthz on the metrics port: the process's threads are alive (readiness is /readyz).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('OMS_METRICS_PORT', '9100'), timeout=2)" || exit 1
ENTRYPOINT ["oms-shipments"]
