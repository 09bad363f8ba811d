# syntax=docker/dockerfile:1
# remstate's image: `docker build -t remstate:0.1.0 .` (deploy/ runs it).
#
# Two stages. The builder makes the wheel; the runtime installs that wheel
# (and its dependencies) and nothing else of the source tree, and runs as a
# numeric non-root user, so that Kubernetes' runAsNonRoot can check it.
# tests/test_dockerfile.py holds these rules and runs the same build steps
# without a container engine: the same wheel, the same entry point.
#
# The base is pinned to an exact release (both stages the same); add its
# digest (python:3.11.14-slim-bookworm@sha256:...) where your policy asks.

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# What the wheel is made of: the package, its metadata and readme, and the
# control plane's build script (the wheel carries it for remstate.testing).
COPY pyproject.toml README.md ./
COPY hack/build-controlplane.sh hack/
COPY src/ src/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 remstate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin remstate
# The wheel is mounted from the builder, not copied: no layer keeps it.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels pip install /wheels/remstate-*.whl
# Numeric, as deploy/base/deployment.yaml's runAsUser.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["remstate"]
CMD ["serve"]
