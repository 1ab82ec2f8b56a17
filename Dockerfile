# FedScission image: one image for every role of the deployment in compose/ (an FHS replica `fhs serve`,
# the dev IdP `fhs idp serve`, a resource node `scission resource serve`); the role is the container's command.
# Build from the repository root:  docker build -t fedscission .
# No HEALTHCHECK here: each role listens on its own port and path, so compose/compose.yml declares one per
# service (a python one-liner, since the image has no curl).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fhs ./fhs
COPY member_api ./member_api
COPY operator_api ./operator_api
COPY scission_service ./scission_service
COPY policies ./policies
# The runtime dependencies only (no dev extras); the final stage copies the venv, not the source tree.
RUN python -m venv /opt/fedscission && /opt/fedscission/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/fedscission/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KERAS_HOME=/tmp/keras \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2
COPY --from=build /opt/fedscission /opt/fedscission
# A fixed non-root uid; the data directories exist (owned by it) so fresh named volumes inherit that owner.
RUN groupadd --system --gid 10001 fedscission \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/fedscission \
       --shell /usr/sbin/nologin fedscission \
    && mkdir -p /var/lib/fhs /var/lib/fhs-idp /var/lib/scission \
    && chown 10001:10001 /var/lib/fhs /var/lib/fhs-idp /var/lib/scission \
    && chmod 0700 /var/lib/fhs /var/lib/fhs-idp /var/lib/scission
USER 10001:10001
WORKDIR /var/lib/fhs
# 8080: FHS, 9000: dev IdP, 8090: resource node.
EXPOSE 8080 8090 9000
CMD ["fhs", "serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/var/lib/fhs"]
