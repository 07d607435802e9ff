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
# under .data/ and are listed in .data/started-services, which `down` reads. PUSH_DATA_DIR puts
# that folder elsewhere (the tests of scripts/with-services.sh use a temp one, so that they never
# touch the servers of the checkout's own test run).
#
# NATS must be 2.11.0 or newer (the apps refuse older ones). When the server answering at
# PUSH_NATS_URL is older (its INFO greeting says which version it is), it is left alone and a
# private current one (scripts/nats-server.sh finds or fetches the binary) is started on a free
# port, said in one line. `up` writes .data/services.env with PUSH_NATS_URL (the server to use)
# and PUSH_NATS_SERVER_BIN (a current binary, for tests that start their own servers); make test,
# make dev and make bench source it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA="${PUSH_DATA_DIR:-$PWD/.data}"
STARTED="$DATA/started-services"
ENV_FILE="$DATA/services.env"
NATS_MIN=2.11.0
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

# The version in the INFO line the server at HOST:PORT greets with; empty when none came.
nats_version() {
  local line
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
  line=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r line <&3 && printf "%s" "$line"' _ "$1" "$2" 2>/dev/null) || true
  [[ $line =~ \"version\":\"([^\"]*)\" ]] && printf '%s\n' "${BASH_REMATCH[1]}"
  return 0
}

# True when version $1 is $NATS_MIN or newer (a prerelease of exactly $NATS_MIN is older).
nats_new_enough() {
  local v=$1 core a b c x y z
  core=${v%%[-+]*}
  [[ $core =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || return 1
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]}
  IFS=. read -r x y z <<<"$NATS_MIN"
  ((a != x)) && { ((a > x)); return; }
  ((b != y)) && { ((b > y)); return; }
  ((c != z)) && { ((c > z)); return; }
  [[ $v != *-* ]]
}

# Writes .data/services.env: the NATS URL the apps and tests use, and a current binary when known.
write_env() {
  local url=$1 bin=$2
  {
    echo '# Written by scripts/services.sh up; make test, make dev and make bench source it.'
    printf 'PUSH_NATS_URL=%q\n' "$url"
    [[ -z $bin ]] || printf 'PUSH_NATS_SERVER_BIN=%q\n' "$bin"
  } >"$ENV_FILE.tmp"
  mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

# Path of a nats-server >= $NATS_MIN (scripts/nats-server.sh may fetch one); dies without one.
current_nats_bin() {
  scripts/nats-server.sh || die "nats: no nats-server $NATS_MIN or newer (above: how to get one)"
}

# Starts BIN on HOST:PORT; PORT -1 means a port the server picks, read from its ports file.
# Prints the URL it listens on.
start_nats() {
  local host=$1 port=$2 bin=$3 ports_dir="$DATA/nats-ports" file i url
  mkdir -p "$DATA/nats"
  rm -rf "$ports_dir"
  mkdir -p "$ports_dir"
  # setsid: Ctrl-C in the terminal must not stop NATS before the apps have drained.
  setsid "$bin" -js -sd "$DATA/nats" -a "$host" -p "$port" --ports_file_dir "$ports_dir" \
    -l "$DATA/nats.log" -P "$DATA/nats.pid" </dev/null >/dev/null 2>&1 8>&- 9>&- &
  record nats
  url=
  for ((i = 0; i < WAIT_SECONDS * 5; i++)); do
    file=$(find "$ports_dir" -name '*.ports' 2>/dev/null | head -n 1)
    if [[ -n $file && $(cat "$file") =~ nats://[^\"]+ ]]; then
      url=${BASH_REMATCH[0]}
      break
    fi
    sleep 0.2
  done
  [[ -n $url ]] || {
    [[ -f $DATA/nats.log ]] && tail -n 20 "$DATA/nats.log" >&2
    die "nats did not write its ports file within ${WAIT_SECONDS}s (log: $DATA/nats.log)"
  }
  read -r host port < <(host_port "$url" 4222)
  wait_for nats "$host" "$port" "$DATA/nats.log"
  echo "$url" >"$DATA/nats.url"
  printf '%s\n' "$url"
}

stop_nats() {
  local pid
  if pid=$(live_pid "$DATA/nats.pid" nats-server); then
    stop_pid nats "$pid"
  fi
  rm -rf "$DATA/nats.pid" "$DATA/nats.url" "$DATA/nats-ports" "$ENV_FILE"
}

# "HOST PORT" of the private NATS this script started, empty when none.
private_nats_endpoint() {
  [[ -s $DATA/nats.url ]] && host_port "$(cat "$DATA/nats.url")" 4222
  return 0
}

# `up` for NATS: use the configured server when it is current, else a private current one.
up_nats() {
  local host port url version bin private phost pport
  url=${PUSH_NATS_URL:-nats://127.0.0.1:4222}
  read -r host port < <(endpoint nats)
  if reachable "$host" "$port"; then
    version=$(nats_version "$host" "$port")
    if nats_new_enough "$version"; then
      # The binary is only for tests that start their own servers: not having one is not fatal here.
      bin=$(scripts/nats-server.sh) || bin=
      write_env "$url" "$bin"
      if was_started nats && [[ $(private_nats_endpoint) == "$host $port" ]]; then
        say "nats: $host:$port is up (private nats-server $version, .data)"
      else
        say "nats: $host:$port is up (nats-server $version)"
      fi
      return 0
    fi
    bin=$(current_nats_bin)
    # A private one from an earlier `up` that still runs: keep using it.
    private=
    if was_started nats && live_pid "$DATA/nats.pid" nats-server >/dev/null; then
      read -r phost pport < <(private_nats_endpoint)
      if [[ -n ${pport:-} ]] && reachable "$phost" "$pport"; then private=$(cat "$DATA/nats.url"); fi
    fi
    if [[ -z $private ]]; then
      stop_nats # one private NATS at a time: they share .data/nats
      private=$(start_nats 127.0.0.1 -1 "$bin")
    fi
    write_env "$private" "$bin"
    say "nats: $host:$port is nats-server ${version:-of unknown version}, older than the $NATS_MIN push needs; left alone, using a private $(nats_version 127.0.0.1 "${private##*:}") on $private (.data/nats, URL in .data/services.env)"
    return 0
  fi
  is_local "$host" || die "nats: $host:$port is not reachable, and a private one can only be started on this machine"
  bin=$(current_nats_bin)
  say "nats: nothing on $host:$port; starting a private one under .data/"
  stop_nats # one private NATS at a time: they share .data/nats
  start_nats "$host" "$port" "$bin" >/dev/null
  write_env "$url" "$bin"
  say "nats: $host:$port is up (private nats-server $(nats_version "$host" "$port"), .data)"
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
    if [[ $name == nats ]]; then
      up_nats
      continue
    fi
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
  local name host port state version rc=0
  for name in "${ALL_SERVICES[@]}"; do
    read -r host port < <(endpoint "$name")
    if reachable "$host" "$port"; then
      state=up
      if was_started "$name" && [[ $name != nats || $(private_nats_endpoint) == "$host $port" ]]; then
        state='up (private, started by scripts/services.sh)'
      fi
      if [[ $name == nats ]]; then
        version=$(nats_version "$host" "$port")
        state+=" nats-server ${version:-?}"
        nats_new_enough "$version" || state+=" (older than $NATS_MIN)"
      fi
    else
      state=down
      rc=1
    fi
    printf '%-9s %-22s %s\n' "$name" "$host:$port" "$state"
  done
  read -r host port < <(endpoint nats)
  if was_started nats && [[ -s $DATA/nats.url && $(private_nats_endpoint) != "$host $port" ]]; then
    read -r host port < <(private_nats_endpoint)
    if reachable "$host" "$port"; then state="up (private) nats-server $(nats_version "$host" "$port")"; else state=down; fi
    printf '%-9s %-22s %s\n' nats "$host:$port" "$state"
  fi
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
