#!/bin/sh
# The extract task of the weather pipeline (see src/weather/__main__.py).
set -eu
exec python3 -m weather extract
