#!/bin/sh
# As in the official image: options alone mean haproxy, and haproxy runs in the
# foreground in master-worker mode.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- haproxy "$@"
fi
if [ "$1" = 'haproxy' ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
