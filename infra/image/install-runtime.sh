#!/bin/sh
# Install the runtime dependencies, and nothing else, into a fresh virtualenv.
#   infra/image/install-runtime.sh VENV [LOCK]
# The image's build stage runs exactly this, and `make image-check` (called by `make test`)
# runs it on this machine and starts the services from the result.
# The lock pins the whole closure, so pip installs it without resolving (--no-deps), and
# `pip check` fails if a pin is missing.
set -eu
venv="$1"
lock="${2:-requirements-runtime.lock}"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --no-deps -r "$lock"
"$venv/bin/pip" check --disable-pip-version-check
