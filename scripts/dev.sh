#!/usr/bin/env bash
# Runs the whole system on this machine: builds, makes sure NATS, Redis and Postgres answer
# (starting private ones under .data/ when they do not), creates the demo app, starts the four
# apps with their output prefixed, and waits. Ctrl-C stops the apps, then the services this run
# started. `make stop` (scripts/stop.sh) does the same from another terminal.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=.data
PIDS="$DATA/dev.pids"
APPS=(center edge dispatcher coordinator)

export PUSH_LOG_PRETTY=1
# One edge process instead of one per core: one log stream, one place to attach a debugger.
export PUSH_EDGE_WORKERS="${PUSH_EDGE_WORKERS:-1}"

say() { printf '[dev] %s\n' "$*"; }
die() {
  printf '[dev] error: %s\n' "$*" >&2
  exit 1
}

app_port() {
  case $1 in
    center) echo "${PUSH_CENTER_PORT:-8080}" ;;
    edge) echo "${PUSH_EDGE_PORT:-8081}" ;;
    dispatcher) echo "${PUSH_DISPATCHER_PORT:-8082}" ;;
    coordinator) echo "${PUSH_COORDINATOR_PORT:-8083}" ;;
    demo) echo "${DEMO_PORT:-8084}" ;;
  esac
}

port_busy() {
  # shellcheck disable=SC2016 # $1 is the inner shell's argument
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

started_services() {
  if [[ -f $DATA/started-services ]]; then sort "$DATA/started-services"; fi
}

# --- stop everything this run started, once ---------------------------------------------------
before=
# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$? ours
  trap - EXIT INT TERM HUP
  say "stopping"
  scripts/stop.sh --apps-only || rc=1
  # Services listed now but not before this run are the ones it started.
  mapfile -t ours < <(comm -13 <(printf '%s\n' "$before") <(started_services) | sed '/^$/d')
  if [[ ${#ours[@]} -gt 0 ]]; then
    scripts/services.sh down "${ours[@]}" || rc=1
  fi
  exit "$rc"
}

mkdir -p "$DATA"
if [[ -s $PIDS ]]; then
  die "$PIDS exists: another dev run may be going on; stop it with make stop"
fi
for name in "${APPS[@]}" demo; do
  port=$(app_port "$name")
  if port_busy "$port"; then die "port $port ($name) is taken; stop whatever listens there (make stop?)"; fi
done

if [[ ! -d node_modules ]]; then
  say "npm install"
  npm install
fi
say "build"
node_modules/.bin/tsc -b tsconfig.json
node libs/client/bundle.mjs
node apps/center/console/bundle.mjs

before=$(started_services)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
scripts/services.sh up
# The NATS to use: a private current one when the configured server is older than 2.11.
set -a
# shellcheck source=/dev/null # written by scripts/services.sh up
. "$DATA/services.env"
set +a

if [[ -z ${PUSH_ADMIN_KEY:-} ]]; then
  if [[ ! -s $DATA/admin-key ]]; then
    (
      umask 077
      node -e "process.stdout.write(require('node:crypto').randomBytes(24).toString('base64url'))" >"$DATA/admin-key"
    )
  fi
  PUSH_ADMIN_KEY=$(cat "$DATA/admin-key")
  export PUSH_ADMIN_KEY
fi

say "dev-setup (migrate, provision, demo app)"
node apps/center/dist/cli.js dev-setup --out "$DATA/demo.json" >/dev/null

# setsid: the apps get exactly one signal on Ctrl-C (our TERM, in cleanup), not the terminal's
# SIGINT as well. The prefixing sed ignores INT so the apps' shutdown logs still get through.
start_app() {
  local name=$1
  setsid node "apps/$name/dist/main.js" > >(
    trap '' INT TERM HUP
    exec sed -u "s/^/[$name] /"
  ) 2>&1 &
  echo "$! $name" >>"$PIDS"
}

wait_ready() {
  local name=$1 port=$2 pid=$3 i
  for ((i = 0; i < 120; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup (its output is above, prefixed [$name])"
    sleep 0.5
  done
  curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" || true
  die "$name is not ready on http://127.0.0.1:$port/readyz after 60s"
}

: >"$PIDS"
rm -f "$DATA/dev.stopping"
for name in "${APPS[@]}"; do start_app "$name"; done
while read -r pid name; do
  wait_ready "$name" "$(app_port "$name")" "$pid"
done <"$PIDS"

json() {
  node -e 'const c = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")); process.stdout.write(String(c[process.argv[2]] ?? ""))' \
    "$DATA/demo.json" "$1"
}
api_key=$(json apiKey)
center_url="http://127.0.0.1:$(app_port center)"

# The demo page and its stand-in business server (signs tokens, pushes the live feed).
DEMO_PORT=$(app_port demo) DEMO_CENTER_URL=$center_url DEMO_DISPATCHER_URL="http://127.0.0.1:$(app_port dispatcher)" \
  DEMO_CREDENTIALS="$DATA/demo.json" setsid node --import tsx demo/server.ts > >(
  trap '' INT TERM HUP
  exec sed -u "s/^/[demo] /"
) 2>&1 &
echo "$! demo" >>"$PIDS"

# The CLI reads the same PUSH_* settings as the apps: repeat the ones that differ from the defaults.
cli_env=''
for v in PUSH_PREFIX PUSH_NATS_URL PUSH_DATABASE_URL PUSH_REDIS_URL PUSH_EDGE_PORT; do
  if [[ -n ${!v:-} ]]; then cli_env+="$v=${!v} "; fi
done

cat <<EOF

=== push is running (Ctrl-C here, or make stop in another terminal, stops it) ===
  center       $center_url          HTTP API; /readyz /healthz /metrics on every app
  edge         ws://127.0.0.1:$(app_port edge)/ws
  dispatcher   http://127.0.0.1:$(app_port dispatcher)/v1/edges?app=demo&user=alice
  coordinator  http://127.0.0.1:$(app_port coordinator)
  demo page    http://127.0.0.1:$(app_port demo)   alice and bob chatting, plus a live feed (open it in a browser)
  console      $center_url/console/   web console: log in with the admin key ($DATA/admin-key)

Demo app 'demo' (credentials in $DATA/demo.json):
  API key      $api_key
  admin key    $DATA/admin-key (Authorization: Bearer ... on /v1/admin/*)
  alice token  $DATA/demo.json, field "token" (ws://127.0.0.1:$(app_port edge)/ws?token=...)

Watch as alice (another terminal):
  ${cli_env}node apps/center/dist/cli.js watch --app demo --user alice

Push to alice:
  ${cli_env}node apps/center/dist/cli.js push demo alice --data '{"hello":"world"}'
or over HTTP:
  curl -sS -X POST $center_url/v1/apps/demo/push \\
    -H 'Authorization: Bearer $api_key' -H 'Content-Type: application/json' \\
    -d '{"user":"alice","data":{"hello":"world"}}'

EOF

# Run until Ctrl-C, or until an app exits (on its own, or because scripts/stop.sh stopped it).
set +e
wait -n
set -e
if [[ ! -f $PIDS || -f $DATA/dev.stopping ]]; then
  say "stopped by make stop"
  exit 0
fi
while read -r pid name; do
  if ! kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) exited"; fi
done < <(cat "$PIDS" 2>/dev/null)
exit 1
