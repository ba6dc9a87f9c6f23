#!/bin/sh
# The platform smoke test's one task (see src/platform_smoke/__main__.py).
set -eu
exec python3 -m platform_smoke
