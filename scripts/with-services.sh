#!/usr/bin/env bash
# Runs one command with NATS, Redis and Postgres answering, then stops the private services this
# run started, and only those: on success, on failure and on Ctrl-C (or TERM, HUP).
#
#   scripts/with-services.sh COMMAND [ARG...]
#
# `scripts/services.sh up` first (a private copy of each service that is not reachable, a private
# current nats-server when the configured one is older than 2.11), then COMMAND with
# .data/services.env (PUSH_NATS_URL, PUSH_NATS_SERVER_BIN) in its environment. A service that was
# already reachable, or that `make dev` or an earlier `up` started (listed in .data/started-services
# before this run), is left running. make test, make bench-smoke and make bench run through this.
# The exit status is COMMAND's (130 after Ctrl-C, 143 after TERM); 1 when stopping failed.
# PUSH_DATA_DIR moves .data/ as it does for scripts/services.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${PUSH_DATA_DIR:-$PWD/.data}

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

started_services() {
  if [[ -f $DATA/started-services ]]; then sort "$DATA/started-services"; fi
}

before=$(started_services)
child=

# shellcheck disable=SC2317 # called from the traps
stop_child() {
  [[ -n $child ]] || return 0
  # An asynchronous command of a script ignores SIGINT: TERM is what reaches it.
  kill -TERM "$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
  child=
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$? ours
  trap - EXIT INT TERM HUP
  stop_child
  # Services listed now but not before this run are the ones it started.
  mapfile -t ours < <(comm -13 <(printf '%s\n' "$before") <(started_services) | sed '/^$/d')
  if [[ ${#ours[@]} -gt 0 ]]; then
    scripts/services.sh down "${ours[@]}" || rc=1
  fi
  exit "$rc"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

scripts/services.sh up
set -a
# shellcheck source=/dev/null # written by scripts/services.sh up
. "$DATA/services.env"
set +a

# In the background, so that a signal to this script runs its trap at once instead of after
# COMMAND ends on its own; stdin stays the terminal's (a background command's would be /dev/null).
"$@" <&0 &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=
exit "$rc"
