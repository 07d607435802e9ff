#!/usr/bin/env bash
# Stops what scripts/dev.sh started: the apps listed in .data/dev.pids (TERM, then KILL after
# 20s), then the private services scripts/services.sh started.
#
#   scripts/stop.sh              apps, then services
#   scripts/stop.sh --apps-only  apps only (dev.sh uses this, then stops only its own services)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PIDS=.data/dev.pids

say() { printf '[stop] %s\n' "$*"; }

# True when PID still runs apps/NAME/dist/main.js, or demo/server.ts for the demo page (and not
# some later process given the same pid).
is_app() {
  local pid=$1 name=$2 script="apps/$2/dist/main.js"
  if [[ $name == demo ]]; then script=demo/server.ts; fi
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$script"
}

if [[ -f $PIDS ]]; then
  # Tells a running dev.sh that its apps are going away on purpose.
  touch .data/dev.stopping
  live=()
  while read -r pid name; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if is_app "$pid" "$name"; then
      say "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      live+=("$pid:$name")
    fi
  done <"$PIDS"
  # The apps drain (edge: tells clients to reconnect) and exit on their own within 15s.
  for ((i = 0; i < 200 && ${#live[@]} > 0; i++)); do
    still=()
    for entry in "${live[@]}"; do
      if is_app "${entry%%:*}" "${entry#*:}"; then still+=("$entry"); fi
    done
    live=("${still[@]+"${still[@]}"}")
    [[ ${#live[@]} -eq 0 ]] || sleep 0.1
  done
  for entry in "${live[@]+"${live[@]}"}"; do
    say "${entry#*:} (pid ${entry%%:*}) did not stop in 20s; killing it"
    kill -KILL "${entry%%:*}" 2>/dev/null || true
  done
  rm -f "$PIDS" .data/dev.stopping
fi

if [[ ${1:-} != --apps-only ]]; then
  scripts/services.sh down
fi
