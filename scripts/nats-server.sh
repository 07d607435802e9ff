#!/usr/bin/env bash
# Prints the path of a nats-server that is 2.11.0 or newer (what the store needs: batched Direct
# Get, per-message TTL), finding or fetching one:
#
#   1. PUSH_NATS_SERVER_BIN, when set (an error when it is older);
#   2. the nats-server on PATH (or /usr/sbin, /usr/local/bin), when new enough;
#   3. .data/bin/nats-server, fetched by an earlier run;
#   4. on machines with apt: Debian unstable's nats-server package, downloaded with a private
#      sources list and private apt state in a temporary folder (the system's apt setup is left
#      as it is), unpacked with dpkg-deb, copied to .data/bin/nats-server.
#
# Elsewhere it stops and says how to get one by hand. Only the path goes to stdout; progress and
# errors go to stderr. Usage: BIN=$(scripts/nats-server.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
MIN=2.11.0
BIN_DIR="${PUSH_DATA_DIR:-$PWD/.data}/bin"
OURS="$BIN_DIR/nats-server"
SUITE=${PUSH_NATS_DEBIAN_SUITE:-unstable}
MIRROR=${PUSH_NATS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '[nats-server] %s\n' "$*" >&2; }
howto() {
  cat >&2 <<EOF
[nats-server] get nats-server $MIN or newer by hand, any of:
  - a release binary: https://github.com/nats-io/nats-server/releases (e.g. nats-server-v2.11.x-linux-amd64.tar.gz),
    unpacked to $OURS or anywhere on PATH
  - go install github.com/nats-io/nats-server/v2@latest   (puts it in \$(go env GOPATH)/bin)
  - the official image: docker run -p 4222:4222 nats:2.11-alpine -js
then run this again, or set PUSH_NATS_SERVER_BIN=/path/to/nats-server (or PUSH_NATS_URL to a running one).
EOF
}
die() {
  printf '[nats-server] error: %s\n' "$*" >&2
  howto
  exit 1
}

# The version BIN reports (`nats-server: v2.15.1` -> 2.15.1); empty when it does not run.
version_of() {
  local out
  out=$("$1" --version 2>/dev/null) || return 0
  out=${out##*v}
  printf '%s\n' "${out%%[[:space:]]*}"
}

# True when version $1 is $MIN or newer. A prerelease of exactly $MIN (2.11.0-RC.1) is older.
new_enough() {
  local v=$1 core pre a b c x y z
  core=${v%%[-+]*}
  pre=
  [[ $v == *-* ]] && pre=${v#*-}
  [[ $core =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || return 1
  a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]} c=${BASH_REMATCH[3]}
  IFS=. read -r x y z <<<"$MIN"
  ((a != x)) && { ((a > x)); return; }
  ((b != y)) && { ((b > y)); return; }
  ((c != z)) && { ((c > z)); return; }
  [[ -z $pre ]]
}

# Prints BIN and succeeds when it is executable and new enough.
accept() {
  local bin=$1 v
  [[ -x $bin ]] || return 1
  v=$(version_of "$bin")
  new_enough "$v" || return 1
  printf '%s\n' "$bin"
}

if [[ -n ${PUSH_NATS_SERVER_BIN:-} ]]; then
  accept "$PUSH_NATS_SERVER_BIN" && exit 0
  v=$(version_of "$PUSH_NATS_SERVER_BIN")
  die "PUSH_NATS_SERVER_BIN=$PUSH_NATS_SERVER_BIN is ${v:+version $v, }not a nats-server $MIN or newer"
fi

found_old=
for bin in $(type -P -a nats-server 2>/dev/null || true) /usr/local/bin/nats-server /usr/sbin/nats-server; do
  accept "$bin" && exit 0
  if [[ -x $bin && -z $found_old ]]; then found_old="$bin ($(version_of "$bin"))"; fi
done
accept "$OURS" && exit 0

# --- fetch Debian's package --------------------------------------------------------------------
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
  die "no nats-server $MIN or newer here${found_old:+ (found $found_old)}, and no apt-get/dpkg-deb to fetch one"

mkdir -p "$BIN_DIR"
# One fetch at a time (make test and a test helper may both ask); the loser reuses the result.
exec 8>"$BIN_DIR/.fetch.lock"
flock -w 300 8 || die "another fetch has held $BIN_DIR/.fetch.lock for 300s"
accept "$OURS" && exit 0

T=$(mktemp -d "${TMPDIR:-/tmp}/push-nats-fetch.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/lists/partial" "$T/archives/partial" "$T/cache" "$T/x"
echo "deb $MIRROR $SUITE main" >"$T/sources.list"
APT=(apt-get -q -o "Dir::Etc::sourcelist=$T/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$T/lists"
  -o "Dir::Cache=$T/cache" -o "Dir::Cache::archives=$T/archives" -o Debug::NoLocking=1)
say "no nats-server $MIN or newer${found_old:+ (found $found_old)}; fetching Debian $SUITE's package into $OURS"
"${APT[@]}" update >"$T/apt.log" 2>&1 || {
  tail -n 20 "$T/apt.log" >&2
  die "apt-get update of Debian $SUITE ($MIRROR) failed"
}
(cd "$T" && "${APT[@]}" download nats-server) >>"$T/apt.log" 2>&1 || {
  tail -n 20 "$T/apt.log" >&2
  die "apt-get download nats-server from Debian $SUITE failed"
}
deb=$(find "$T" -maxdepth 1 -name 'nats-server_*.deb' | head -n 1)
[[ -n $deb ]] || die "apt-get download left no nats-server_*.deb"
dpkg-deb -x "$deb" "$T/x" || die "dpkg-deb -x $deb failed"
[[ -x $T/x/usr/sbin/nats-server ]] || die "$(basename "$deb") has no usr/sbin/nats-server"
v=$(version_of "$T/x/usr/sbin/nats-server")
# An empty version: the binary did not run here (Debian unstable's needs glibc 2.34 or newer).
new_enough "$v" || die "$(basename "$deb") gave a nats-server that ${v:+is $v}${v:-does not run on this machine (glibc too old?)}"
cp "$T/x/usr/sbin/nats-server" "$OURS.tmp.$$"
chmod 755 "$OURS.tmp.$$"
mv -f "$OURS.tmp.$$" "$OURS"
say "nats-server $v is at $OURS"
printf '%s\n' "$OURS"
