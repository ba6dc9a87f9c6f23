#!/bin/sh
# Allocates past the task's memory limit; the platform must kill it (see
# src/platform_smoke/memory_hog.py and dags/platform_memory_limit.py).
set -eu
exec python3 -m platform_smoke.memory_hog
