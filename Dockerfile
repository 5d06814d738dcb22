# One image, four services: the command names the service (python -m services.<name>).
#   docker build -t concert-ticketing .
#   docker run concert-ticketing services.queue        # or services.reservation, .payment,
#                                                      # .seat_projection
# It holds the runtime dependencies alone (requirements-runtime.lock), runs as a non-root
# user, and starts in production mode, which refuses to start without REDIS_URL and
# KAFKA_BROKERS. `make image-check` runs the same install script and starts the services from
# its result on a machine without Docker; hadolint lints this file in `make test`.
# Pinned by tag and by the digest of its multi-architecture index, so a rebuild gets the same
# base. No registry is reachable from where this was written: the digest is the one public
# projects pin for this tag, not read from Docker Hub here. Check it, or move it on, with
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
WORKDIR /build
COPY requirements-runtime.lock infra/image/install-runtime.sh ./
RUN sh install-runtime.sh /opt/venv requirements-runtime.lock

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 ticketing \
    && useradd --system --uid 10001 --gid ticketing --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin ticketing \
    && install -d -o ticketing -g ticketing /var/lib/ticketing
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY shared/ shared/
COPY services/ services/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=prod \
    QUEUE_HOST=0.0.0.0 \
    RESERVATION_HOST=0.0.0.0 \
    PAYMENT_HOST=0.0.0.0 \
    SEAT_PROJECTION_HOST=0.0.0.0 \
    RESERVATION_DATA_DIR=/var/lib/ticketing/reservation \
    PAYMENT_DATA_DIR=/var/lib/ticketing/payment \
    SEAT_PROJECTION_DATA_DIR=/var/lib/ticketing/seat_projection
USER 10001:10001
VOLUME ["/var/lib/ticketing"]
EXPOSE 8000 8001 8002 8003
ENTRYPOINT ["python", "-m"]
CMD ["services.queue"]
