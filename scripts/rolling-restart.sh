#!/usr/bin/env bash
# Rolling restart of a local NATS cluster, one node at a time:
#
#   scripts/rolling-restart.sh [--no-ldm] [--timeout SECONDS] [CONF...]
#
# For each node, given by the config file it was started with (`nats-server -c CONF`; default
# nats/cluster/n1.conf n2.conf n3.conf): put it in lame duck mode (SIGUSR2, what
# `nats-server --signal ldm=<pid>` sends: it stops taking clients, hands its stream leaderships
# over and closes its clients spread over `lame_duck_duration`), wait for it to exit, start it
# again with the same command line in the same directory, and wait until its JetStream is
# current (its monitoring port's /healthz answers 200, which it does only once every stream
# and consumer it holds has caught up) before the next node. `--no-ldm` sends SIGTERM instead
# (a plain graceful shutdown: clients are dropped at once). The fault suite and the failover
# benchmark run this script against their own private clusters.
#
# A restarted node runs detached (setsid), its output appended to CONF.log. Exits non-zero,
# naming the node, when a node is not running, does not exit, or is not current within
# --timeout (default 120 s per step).
set -euo pipefail

ldm=1
timeout=120
confs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-ldm) ldm=0 ;;
    --timeout)
      timeout=$2
      shift
      ;;
    -h | --help)
      sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "rolling-restart: unknown option $1" >&2
      exit 2
      ;;
    *) confs+=("$1") ;;
  esac
  shift
done
if [[ ${#confs[@]} -eq 0 ]]; then
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  confs=("$root/nats/cluster/n1.conf" "$root/nats/cluster/n2.conf" "$root/nats/cluster/n3.conf")
fi

say() { echo "[rolling-restart $(date -u +%T.%N | cut -c1-12)] $*" >&2; }

# The pid of the nats-server started with `-c CONF` / `--config CONF` (the path compared after
# resolving it from the process's working directory), or nothing.
find_pid() {
  local want=$1 pid arg prev cwd path
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ -r $dir/cmdline ]] || continue
    local -a argv=()
    mapfile -d '' -t argv <"$dir/cmdline" 2>/dev/null || continue
    [[ ${#argv[@]} -gt 0 && ${argv[0]} == *nats-server ]] || continue
    [[ $(awk '{print $3}' "$dir/stat" 2>/dev/null) != Z ]] || continue
    cwd=$(readlink "$dir/cwd" 2>/dev/null) || continue
    prev=''
    for arg in "${argv[@]}"; do
      if [[ $prev == -c || $prev == --config ]]; then
        [[ $arg == /* ]] && path=$arg || path=$cwd/$arg
        if [[ $(realpath -m "$path") == "$want" ]]; then
          echo "$pid"
          return 0
        fi
      fi
      prev=$arg
    done
  done
}

# The monitoring port of a config: `http_port: N`, `http: N` or `http: host:N`.
monitor_port() {
  local line
  line=$(grep -E '^[[:space:]]*(http_port|http|monitor_port)[[:space:]]*[:=]' "$1" | head -n 1) || true
  [[ -n $line ]] || return 1
  line=${line#*[:=]}
  line=${line//[\"\' ]/}
  echo "${line##*:}"
}

alive() { [[ -d /proc/$1 && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

for conf in "${confs[@]}"; do
  conf=$(realpath -m "$conf")
  port=$(monitor_port "$conf") || {
    say "$conf names no monitoring port (http_port): cannot tell when the node is current"
    exit 1
  }
  pid=$(find_pid "$conf")
  if [[ -z $pid ]]; then
    say "no nats-server runs with -c $conf"
    exit 1
  fi
  mapfile -d '' -t argv <"/proc/$pid/cmdline"
  cwd=$(readlink "/proc/$pid/cwd")

  if [[ $ldm -eq 1 ]]; then
    say "$(basename "$conf"): lame duck (pid $pid)"
    kill -USR2 "$pid"
  else
    say "$(basename "$conf"): SIGTERM (pid $pid)"
    kill -TERM "$pid"
  fi
  deadline=$((SECONDS + timeout))
  while alive "$pid"; do
    if ((SECONDS > deadline)); then
      say "$(basename "$conf"): pid $pid still runs after ${timeout} s"
      exit 1
    fi
    sleep 0.1
  done

  say "$(basename "$conf"): starting again"
  # setsid -f: a new session, forked off at once, so nothing of ours (this script's output pipe
  # included) stays attached to the server.
  (cd "$cwd" && exec setsid -f "${argv[@]}" >>"$conf.log" 2>&1 </dev/null) </dev/null >/dev/null 2>&1
  deadline=$((SECONDS + timeout))
  until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz"; do
    if ((SECONDS > deadline)); then
      say "$(basename "$conf"): not current (/healthz on :$port) after ${timeout} s; see $conf.log"
      exit 1
    fi
    sleep 0.2
  done
  say "$(basename "$conf"): current (pid $(find_pid "$conf"))"
done
say "done"
