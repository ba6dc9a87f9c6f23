#!/usr/bin/env bash
# Start or stop a Docker Engine for the end-to-end run.
#
#   tests/e2e/engine.sh start   start dockerd in the background unless one answers already;
#                               exit non-zero with the reason if it does not come up
#   tests/e2e/engine.sh stop    stop the dockerd that `start` started (and nothing else)
#   tests/e2e/engine.sh status  exit 0 if an engine answers on the socket
#
# The daemon's log goes to $E2E_ARTIFACTS/dockerd.log, and the pid of a daemon this
# script started to $E2E_ARTIFACTS/dockerd.pid: `stop` only ever ends that pid, so
# an engine the machine already ran is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ARTIFACTS="${E2E_ARTIFACTS:-$ROOT/.e2e-artifacts}"
SOCKET="${DOCKER_SOCKET:-/var/run/docker.sock}"
TIMEOUT="${DOCKERD_START_TIMEOUT:-90}"
PIDFILE="$ARTIFACTS/dockerd.pid"
LOG="$ARTIFACTS/dockerd.log"

answers() {
  # The engine's own health endpoint over the socket, with no docker CLI needed.
  curl --silent --fail --max-time 5 --unix-socket "$SOCKET" http://localhost/_ping >/dev/null 2>&1
}

start() {
  mkdir -p "$ARTIFACTS"
  if answers; then
    echo "engine: a Docker Engine already answers on $SOCKET; using it"
    return 0
  fi
  command -v dockerd >/dev/null || {
    echo "engine: dockerd is not installed; install it with: apt-get install docker.io" >&2
    exit 1
  }
  echo "engine: starting dockerd (log: $LOG)"
  # setsid: the daemon outlives this shell and gets none of its terminal's signals.
  setsid dockerd --host "unix://$SOCKET" >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local waited=0
  until answers; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "engine: dockerd exited while starting; the end of its log:" >&2
      tail -n 30 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if ((waited >= TIMEOUT)); then
      echo "engine: dockerd did not answer on $SOCKET within ${TIMEOUT}s; the end of its log:" >&2
      tail -n 30 "$LOG" >&2
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "engine: dockerd answers on $SOCKET after ${waited}s"
}

stop() {
  if [[ ! -s "$PIDFILE" ]]; then
    echo "engine: no dockerd was started by this script; nothing to stop"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    echo "engine: stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "engine: dockerd did not stop within 30s; killing it" >&2
      kill -KILL "$pid" || true
    fi
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
