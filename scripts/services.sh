#!/usr/bin/env bash
# NATS (JetStream), Redis and Postgres for development and tests.
#
#   scripts/services.sh up [SERVICE...]      start a private copy of each service that is not reachable
#   scripts/services.sh down [SERVICE...]    stop the private copies this script started
#   scripts/services.sh status               say which are reachable and which are ours
#
# SERVICE is nats, redis or postgres (default: all three). Hosts and ports come from
# PUSH_NATS_URL, PUSH_REDIS_URL and PUSH_DATABASE_URL (the same defaults as the apps). A service
# that already answers is used as is and never stopped. Private copies keep their data and logs
# under .data/ and are listed in .data/started-services, which `down` reads.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="$PWD/.data"
STARTED="$DATA/started-services"
WAIT_SECONDS="${PUSH_SERVICES_WAIT:-20}"
ALL_SERVICES=(nats redis postgres)

say() { printf '[services] %s\n' "$*"; }
die() {
  printf '[services] error: %s\n' "$*" >&2
  exit 1
}

# Prints "HOST PORT" of the first server in a URL such as nats://u:p@host:4222,nats://other:4222
# or postgres://user@host:5432/db?x=y. IPv6 hosts are written [::1]:port.
host_port() {
  local url=$1 default_port=$2 rest host port
  rest=${url%%,*}
  rest=${rest#*://}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  rest=${rest##*@}
  if [[ $rest == \[*\]* ]]; then
    host=${rest%%]*}
    host=${host#[}
    port=${rest#*]}
    port=${port#:}
  elif [[ $rest == *:* ]]; then
    host=${rest%:*}
    port=${rest##*:}
  else
    host=$rest
    port=
  fi
  [[ $host == localhost || -z $host ]] && host=127.0.0.1
  printf '%s %s\n' "$host" "${port:-$default_port}"
}

endpoint() {
  case $1 in
    nats) host_port "${PUSH_NATS_URL:-nats://127.0.0.1:4222}" 4222 ;;
    redis) host_port "${PUSH_REDIS_URL:-redis://127.0.0.1:6379}" 6379 ;;
    postgres) host_port "${PUSH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/push}" 5432 ;;
    *) die "unknown service '$1' (expected nats, redis or postgres)" ;;
  esac
}

reachable() {
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

is_local() {
  [[ $1 == 127.* || $1 == ::1 || $1 == 0.0.0.0 ]]
}

wait_for() {
  local name=$1 host=$2 port=$3 log=$4 i
  for ((i = 0; i < WAIT_SECONDS * 5; i++)); do
    reachable "$host" "$port" && return 0
    sleep 0.2
  done
  [[ -f $log ]] && tail -n 20 "$log" >&2
  die "$name did not accept connections on $host:$port within ${WAIT_SECONDS}s (log: $log)"
}

need_binary() {
  local bin=$1 package=$2
  command -v "$bin" >/dev/null 2>&1 && return 0
  die "$bin is not installed; install it with: sudo apt-get install -y $package"
}

# Records NAME in the started-services list (once).
record() {
  touch "$STARTED"
  grep -qx "$1" "$STARTED" || echo "$1" >>"$STARTED"
}

unrecord() {
  [[ -f $STARTED ]] || return 0
  grep -vx "$1" "$STARTED" >"$STARTED.tmp" || true
  mv "$STARTED.tmp" "$STARTED"
  [[ -s $STARTED ]] || rm -f "$STARTED"
}

was_started() {
  [[ -f $STARTED ]] && grep -qx "$1" "$STARTED"
}

# The pid in FILE when that process is still alive and runs COMMAND.
live_pid() {
  local file=$1 command=$2 pid
  [[ -f $file ]] || return 1
  pid=$(head -n 1 "$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$command" || return 1
  echo "$pid"
}

stop_pid() {
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "$name (pid $pid) did not stop in 10s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# --- NATS ------------------------------------------------------------------------------------

start_nats() {
  local host=$1 port=$2
  need_binary nats-server nats-server
  mkdir -p "$DATA/nats"
  # setsid: Ctrl-C in the terminal must not stop NATS before the apps have drained.
  setsid nats-server -js -sd "$DATA/nats" -a "$host" -p "$port" \
    -l "$DATA/nats.log" -P "$DATA/nats.pid" </dev/null >/dev/null 2>&1 9>&- &
  record nats
  wait_for nats "$host" "$port" "$DATA/nats.log"
}

stop_nats() {
  local pid
  if pid=$(live_pid "$DATA/nats.pid" nats-server); then
    stop_pid nats "$pid"
  fi
  rm -f "$DATA/nats.pid"
}

# --- Redis -----------------------------------------------------------------------------------

start_redis() {
  local host=$1 port=$2
  need_binary redis-server redis-server
  mkdir -p "$DATA/redis"
  redis-server --port "$port" --bind "$host" --dir "$DATA/redis" --save '' --appendonly no \
    --daemonize yes --pidfile "$DATA/redis.pid" --logfile "$DATA/redis.log" >/dev/null 9>&-
  record redis
  wait_for redis "$host" "$port" "$DATA/redis.log"
}

stop_redis() {
  local pid
  if pid=$(live_pid "$DATA/redis.pid" redis-server); then
    stop_pid redis "$pid"
  fi
  rm -f "$DATA/redis.pid"
}

# --- Postgres --------------------------------------------------------------------------------

PG_DIR="$DATA/pg"
PG_LOG="$DATA/pg.log"

# Debian keeps initdb and pg_ctl in /usr/lib/postgresql/<major>/bin, off PATH. Prefer the major
# version that created .data/pg, then the newest installed, then PATH.
pg_bin_dir() {
  local dir
  if [[ -f $PG_DIR/PG_VERSION && -x /usr/lib/postgresql/$(cat "$PG_DIR/PG_VERSION")/bin/pg_ctl ]]; then
    echo "/usr/lib/postgresql/$(cat "$PG_DIR/PG_VERSION")/bin"
    return 0
  fi
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  if [[ -n $dir && -x $dir/pg_ctl && -x $dir/initdb ]]; then
    echo "$dir"
    return 0
  fi
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  die "Postgres server binaries (initdb, pg_ctl) are not installed; install them with: sudo apt-get install -y postgresql"
}

# Postgres refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local host=$1 port=$2 bin
  bin=$(pg_bin_dir)
  mkdir -p "$PG_DIR"
  touch "$PG_LOG"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user (sudo apt-get install -y postgresql creates it)"
    chown postgres: "$PG_DIR" "$PG_LOG"
    chmod 700 "$PG_DIR"
    as_pg test -w "$PG_DIR" || die "user postgres cannot write $PG_DIR (a parent directory is not accessible to it)"
  fi
  if [[ ! -f $PG_DIR/PG_VERSION ]]; then
    say "initdb $PG_DIR (superuser postgres, trust auth)"
    as_pg "$bin/initdb" -D "$PG_DIR" -U postgres -A trust -E UTF8 --no-sync >>"$PG_LOG" 2>&1 ||
      {
        tail -n 20 "$PG_LOG" >&2
        die "initdb failed (log: $PG_LOG)"
      }
  fi
  record postgres
  as_pg setsid -w "$bin/pg_ctl" -D "$PG_DIR" -l "$PG_LOG" -w -t "$WAIT_SECONDS" \
    -o "-p $port -k /tmp -c listen_addresses=$host" start >/dev/null 9>&- ||
    {
      tail -n 20 "$PG_LOG" >&2
      die "Postgres did not start (log: $PG_LOG)"
    }
  wait_for postgres "$host" "$port" "$PG_LOG"
}

stop_postgres() {
  local bin
  [[ -f $PG_DIR/postmaster.pid ]] || return 0
  bin=$(pg_bin_dir)
  as_pg "$bin/pg_ctl" -D "$PG_DIR" -m fast -w -t 30 stop >/dev/null ||
    say "pg_ctl stop failed (log: $PG_LOG)"
}

# --- commands --------------------------------------------------------------------------------

up() {
  local name host port
  mkdir -p "$DATA"
  for name in "$@"; do
    read -r host port < <(endpoint "$name")
    if reachable "$host" "$port"; then
      if was_started "$name"; then
        say "$name: $host:$port is up (private, .data)"
      else
        say "$name: $host:$port is up"
      fi
      continue
    fi
    is_local "$host" || die "$name: $host:$port is not reachable, and a private one can only be started on this machine"
    say "$name: nothing on $host:$port; starting a private one under .data/"
    "start_$name" "$host" "$port"
    say "$name: $host:$port is up (private, .data)"
  done
}

down() {
  local name
  for name in "$@"; do
    if was_started "$name"; then
      say "$name: stopping the private one"
      "stop_$name"
      unrecord "$name"
    fi
  done
}

status() {
  local name host port state rc=0
  for name in "${ALL_SERVICES[@]}"; do
    read -r host port < <(endpoint "$name")
    if reachable "$host" "$port"; then
      state=up
      if was_started "$name"; then state='up (private, started by scripts/services.sh)'; fi
    else
      state=down
      rc=1
    fi
    printf '%-9s %-22s %s\n' "$name" "$host:$port" "$state"
  done
  return "$rc"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=("${ALL_SERVICES[@]}")
for s in "${services[@]}"; do endpoint "$s" >/dev/null; done

# One up or down at a time (dev.sh and stop.sh may both run `down`). Fd 9 holds the lock; the
# servers started above close it so that they do not hold it after this script ends.
lock() {
  mkdir -p "$DATA"
  exec 9>"$DATA/services.lock"
  flock -w 60 9 || die "another scripts/services.sh has held $DATA/services.lock for 60s"
}

case $cmd in
  up) lock && up "${services[@]}" ;;
  down) lock && down "${services[@]}" ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status [nats|redis|postgres ...]" >&2
    exit 2
    ;;
esac
