#!/usr/bin/env bash
# The services kart's tests (and, until `kart platform` lands, a newcomer's
# first run) need, on this machine:
#   tansu       a Kafka-compatible broker, built once from crates.io and cached
#   postgres    PostgreSQL from Debian's packages, wal_level=logical, loopback
#   flink       a standalone Flink 1.20.1 session cluster (JobManager + one
#               TaskManager) from PyPI's apache-flink-libraries, on Java 17
#
#   scripts/services.sh ensure-tansu        install tansu if it is missing
#   scripts/services.sh test-up             Postgres for the test suite (port 55432)
#   scripts/services.sh test-down
#   scripts/services.sh dev-up              tansu on 19092 + Postgres on 5432 (kart's defaults)
#   scripts/services.sh dev-down
#   scripts/services.sh test-images         images for the Docker tests, in a registry on 127.0.0.1:5000
#   scripts/services.sh test-images-down    stop that registry (images and caches stay)
#   scripts/services.sh ensure-flink        download and unpack Flink's jars once (cached)
#   scripts/services.sh flink-up            the test Flink cluster, REST on localhost:18581
#   scripts/services.sh flink-down
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
STATE="${KART_SERVICES_DIR:-${TMPDIR:-/tmp}/kart-services}"
TEST_PG_PORT="${KART_TEST_PG_PORT:-55432}"
say() { printf '%s\n' "$*" >&2; }

tansu_bin() {
  if [ -n "${KART_TANSU_BIN:-}" ] && [ -x "$KART_TANSU_BIN" ]; then echo "$KART_TANSU_BIN"; return 0; fi
  command -v tansu 2>/dev/null && return 0
  [ -x "$HOME/.cargo/bin/tansu" ] && { echo "$HOME/.cargo/bin/tansu"; return 0; }
  return 1
}

ensure_tansu() {
  if bin=$(tansu_bin); then say "tansu: $bin"; return 0; fi
  say "tansu: not found; building tansu $TANSU_VERSION from crates.io (about 16 minutes on 2 cores, once)"
  # Its default features hold no storage engine: memory:// needs dynostore,
  # sqlite:// needs libsql.
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
  tansu_bin >/dev/null
}

pg_bindir() {
  if [ -n "${KART_PG_BINDIR:-}" ]; then echo "$KART_PG_BINDIR"; return 0; fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then pg_config --bindir; return 0; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  return 1
}

ensure_postgres_packages() {
  pg_bindir >/dev/null && return 0
  say "postgres: installing Debian's postgresql package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pg_bindir >/dev/null
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() { # dir port superuser-password
  local dir=$1 port=$2 password=$3 bindir
  ensure_postgres_packages
  bindir=$(pg_bindir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    local pwfile="$dir/.pw"
    printf '%s\n' "$password" > "$pwfile"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pwfile"; fi
    as_pg "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$pwfile" -A scram-sha-256 --auth-local=trust >/dev/null
    rm -f "$pwfile"
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
max_connections = 300
password_encryption = 'scram-sha-256'
# Test and workshop data only: durability is not worth the fsyncs here.
fsync = off
full_page_writes = off
# synchronous_commit stays on (cheap without fsync): logical decoding only
# sees flushed WAL, and off would delay every CDC event by up to
# wal_writer_delay (200 ms), which the workshop's Postgres does not do.
CONF
  fi
  if as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    say "postgres: running on 127.0.0.1:$port ($dir)"
  else
    as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
    say "postgres: started on 127.0.0.1:$port ($dir)"
  fi
  # Servers created by an older version of this script ran with
  # synchronous_commit = off; turn it on where it still is.
  as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt \
    -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
  # A second role with scram-sha-256 for remote-mode tests (the managed server's stand-in).
  as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt -c \
    "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kart_scram') THEN
       CREATE ROLE kart_scram LOGIN CREATEDB REPLICATION PASSWORD 'kart-scram-secret'; END IF; END \$\$;" >/dev/null
}

stop_postgres() { # dir
  local dir=$1 bindir
  bindir=$(pg_bindir) || return 0
  [ -f "$dir/data/PG_VERSION" ] || return 0
  as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
  say "postgres: stopped ($dir)"
}

start_dev_tansu() {
  local bin; bin=$(tansu_bin)
  mkdir -p "$STATE/dev"
  if [ -f "$STATE/dev/tansu.pid" ] && kill -0 "$(cat "$STATE/dev/tansu.pid")" 2>/dev/null; then
    say "tansu: running on localhost:19092"; return 0
  fi
  # tansu resolves sqlite:// paths against its working directory.
  (cd "$STATE/dev" && nohup "$bin" broker \
    --kafka-listener-url tcp://127.0.0.1:19092 \
    --advertised-listener-url tcp://localhost:19092 \
    --storage-engine "sqlite://tansu.db" \
    > "$STATE/dev/tansu.log" 2>&1 & echo $! > "$STATE/dev/tansu.pid")
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/19092) 2>/dev/null && { say "tansu: started on localhost:19092"; return 0; }
    sleep 0.1
  done
  say "tansu: did not open port 19092; see $STATE/dev/tansu.log"; return 1
}

# --- Images for the Docker tests (design §10) ---------------------------------
# No public image registry is reachable where kart's tests run, so they build
# their own: a Debian root filesystem from mmdebstrap (PostgreSQL included)
# loaded with `docker import`, and thin `docker build`s on it for PostgreSQL
# and for the host-built tansu. Both are pushed to Debian's docker-registry on
# 127.0.0.1:5000, which the test compose files name, so pulls and their
# progress are real. Every step is cached: the rootfs tarball and the
# registry's storage under $CACHE, the images in Docker, keyed by their inputs
# (kart.key labels); a run with nothing to do takes a few seconds.
CACHE="${KART_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kart}"
REGISTRY=127.0.0.1:5000
IMAGES_SRC="$(cd "$(dirname "$0")" && pwd)/test-images"
BASE_IMAGE=kart-test/base:bookworm
PG_IMAGE=kart-test/postgres:15
TANSU_IMAGE=kart-test/tansu:$TANSU_VERSION
# Only what the images need. PostgreSQL's JIT (LLVM, ~130 MB) is left out:
# without llvmjit.so the server just runs without JIT. Docs, man pages and
# translations go too. The cluster Debian would create on install is not made.
BASE_MMDEBSTRAP=(
  --variant=minbase --include=postgresql-15
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/lib/*/libLLVM*' --dpkgopt='path-exclude=/usr/lib/*/libz3.so*'
  --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*'
  --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*'
  # shellcheck disable=SC2016 # $1 is the chroot, for mmdebstrap's hook shell
  --essential-hook='mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/kart.conf"'
  bookworm
)

step_done() { # started-at message
  say "test-images: $2 ($((SECONDS - $1))s)"
}

ensure_image_tools() {
  local t=$SECONDS missing=()
  if ! docker info >/dev/null 2>&1; then
    say "test-images: cannot reach the Docker engine (docker info failed)"; return 1
  fi
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  if [ ${#missing[@]} -gt 0 ]; then
    say "test-images: installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Under systemd the package starts its own registry on :5000, with
    # htpasswd auth; ours needs that port.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
      systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
    fi
    step_done "$t" "tools: installed ${missing[*]}"
  else
    step_done "$t" "tools: mmdebstrap and docker-registry present"
  fi
}

registry_answers() { curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" 2>/dev/null; }

start_registry() {
  local t=$SECONDS dir="$STATE/registry" store="$CACHE/registry" pid
  mkdir -p "$dir" "$store"
  if [ -f "$dir/registry.pid" ] && pid=$(cat "$dir/registry.pid") && kill -0 "$pid" 2>/dev/null && registry_answers; then
    step_done "$t" "registry: running on $REGISTRY (pid $pid, storage $store)"; return 0
  fi
  rm -f "$dir/registry.pid"
  # Ours, started before its pid file went (say, with a cleaned /tmp).
  if pid=$(pgrep -o -fx "docker-registry serve $dir/config.yml") && registry_answers; then
    echo "$pid" > "$dir/registry.pid"
    step_done "$t" "registry: running on $REGISTRY (pid $pid, storage $store)"; return 0
  fi
  if (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
    say "test-images: registry: something else already listens on 127.0.0.1:5000:"
    ss -ltnp 'sport = :5000' >&2 2>/dev/null || true
    say "  stop it (for Debian's own: systemctl disable --now docker-registry) and run this again"
    return 1
  fi
  # Its own config: Debian's /etc/docker/registry/config.yml listens on all
  # addresses, requires htpasswd auth and stores under /var/lib.
  cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: info
  fields:
    service: kart-test-registry
storage:
  filesystem:
    rootdirectory: $store
  delete:
    enabled: true
http:
  addr: $REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
YML
  # A background process, not a systemd unit: machines here need not run systemd.
  setsid nohup docker-registry serve "$dir/config.yml" >> "$dir/registry.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$dir/registry.pid"
  for _ in $(seq 1 100); do
    if registry_answers; then
      step_done "$t" "registry: started on $REGISTRY (pid $pid, storage $store, log $dir/registry.log)"; return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  say "test-images: registry: /v2/ on $REGISTRY did not answer; the end of $dir/registry.log:"
  tail -n 20 "$dir/registry.log" >&2 || true
  return 1
}

stop_registry() {
  local dir="$STATE/registry" pid
  if [ -f "$dir/registry.pid" ] && pid=$(cat "$dir/registry.pid") && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "test-images: registry stopped (storage kept in $CACHE/registry)"
  else
    say "test-images: registry not running"
  fi
  rm -f "$dir/registry.pid"
}

image_key() { # image -> its kart.key label, or nothing
  docker image inspect -f '{{ index .Config.Labels "kart.key" }}' "$1" 2>/dev/null || true
}

# Images a rebuild replaced; removed at the end so rebuilds do not pile up.
SUPERSEDED=()
note_superseded() { # image (before it is rebuilt)
  local id
  id=$(docker image inspect -f '{{ .Id }}' "$1" 2>/dev/null) && SUPERSEDED+=("$id")
  return 0
}
remove_superseded() {
  local id i
  # Children (the postgres and tansu images) before their old base.
  for ((i = ${#SUPERSEDED[@]} - 1; i >= 0; i--)); do
    id=${SUPERSEDED[i]}
    docker rmi "$id" >/dev/null 2>&1 || true
  done
}

ensure_base_image() {
  local t=$SECONDS key tar
  key=$(printf '%s\n' "${BASE_MMDEBSTRAP[@]}" | sha256sum | cut -c1-16)
  tar="$CACHE/images/base-bookworm-$key.tar"
  if [ -s "$tar" ]; then
    step_done "$t" "base rootfs: cached ($tar)"
  else
    mkdir -p "$CACHE/images"
    say "test-images: base rootfs: mmdebstrap bookworm with PostgreSQL 15 (about 2 minutes, once)"
    if ! mmdebstrap --format=tar "${BASE_MMDEBSTRAP[@]}" "$tar.partial" > "$CACHE/images/mmdebstrap.log" 2>&1; then
      say "test-images: mmdebstrap failed; the end of $CACHE/images/mmdebstrap.log:"
      tail -n 30 "$CACHE/images/mmdebstrap.log" >&2; rm -f "$tar.partial"; return 1
    fi
    mv "$tar.partial" "$tar"
    # Tarballs of earlier recipes are of no more use.
    find "$CACHE/images" -maxdepth 1 -name 'base-bookworm-*.tar' ! -path "$tar" -delete
    step_done "$t" "base rootfs: built ($tar, $(du -h "$tar" | cut -f1))"
  fi
  t=$SECONDS
  if [ "$(image_key "$BASE_IMAGE")" = "$key" ]; then
    step_done "$t" "base image: $BASE_IMAGE cached"
  else
    note_superseded "$BASE_IMAGE"
    docker import --change "LABEL kart.key=$key" --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["bash"]' "$tar" "$BASE_IMAGE" >/dev/null
    step_done "$t" "base image: $BASE_IMAGE imported"
  fi
}

build_image() { # image context-dir key
  local t=$SECONDS image=$1 ctx=$2 key=$3 log="$STATE/build-${1//[\/:]/-}.log"
  if [ "$(image_key "$image")" = "$key" ]; then
    step_done "$t" "image: $image cached"; return 0
  fi
  mkdir -p "$STATE"
  note_superseded "$image"
  # The classic builder: FROM resolves to the local base image, never a pull.
  if ! DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$BASE_IMAGE" --label "kart.key=$key" \
      -t "$image" "$ctx" > "$log" 2>&1; then
    say "test-images: docker build of $image failed; the end of $log:"
    tail -n 30 "$log" >&2; return 1
  fi
  step_done "$t" "image: $image built"
}

push_image() { # image
  local t=$SECONDS image=$1 remote="$REGISTRY/$1" repo=${1%:*} tag=${1##*:} want have
  docker tag "$image" "$remote"
  want=$(curl -fsS -I --max-time 5 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/$repo/manifests/$tag" 2>/dev/null | tr -d '\r' |
    awk 'tolower($1) == "docker-content-digest:" { print $2 }') || want=
  have=$(docker image inspect -f '{{ range .RepoDigests }}{{ println . }}{{ end }}' "$remote")
  if [ -n "$want" ] && grep -qxF "$REGISTRY/$repo@$want" <<<"$have"; then
    step_done "$t" "push: $remote already in the registry"; return 0
  fi
  if ! docker push "$remote" > "$STATE/push.log" 2>&1; then
    say "test-images: docker push $remote failed; the end of $STATE/push.log:"
    tail -n 20 "$STATE/push.log" >&2; return 1
  fi
  step_done "$t" "push: $remote pushed"
}

files_key() { # lines of inputs on stdin -> a short key
  sha256sum | cut -c1-16
}

test_images() {
  local started=$SECONDS base_id bin ctx
  ensure_image_tools
  start_registry
  ensure_base_image
  base_id=$(docker image inspect -f '{{ .Id }}' "$BASE_IMAGE")
  build_image "$PG_IMAGE" "$IMAGES_SRC/postgres" \
    "$({ echo "$base_id"; cat "$IMAGES_SRC/postgres/Dockerfile" "$IMAGES_SRC/postgres/docker-entrypoint.sh"; } | files_key)"
  push_image "$PG_IMAGE"
  # tansu is the host's own build (16 minutes; test.sh's tansu stage makes it).
  if ! bin=$(tansu_bin); then
    say "test-images: no tansu binary (~/.cargo/bin/tansu or \$KART_TANSU_BIN): run scripts/services.sh ensure-tansu first"
    return 1
  fi
  local key
  key=$({ echo "$base_id"; cat "$IMAGES_SRC/tansu/Dockerfile"; sha256sum < "$bin"; } | files_key)
  if [ "$(image_key "$TANSU_IMAGE")" = "$key" ]; then
    build_image "$TANSU_IMAGE" /nonexistent "$key"
  else
    mkdir -p "$STATE"
    ctx=$(mktemp -d "$STATE/tansu-image.XXXXXX")
    cp "$IMAGES_SRC/tansu/Dockerfile" "$ctx/"
    cp "$bin" "$ctx/tansu"
    build_image "$TANSU_IMAGE" "$ctx" "$key" || { rm -rf "$ctx"; return 1; }
    rm -rf "$ctx"
  fi
  push_image "$TANSU_IMAGE"
  remove_superseded
  say "test-images: ready in $((SECONDS - started))s: $REGISTRY/$PG_IMAGE, $REGISTRY/$TANSU_IMAGE"
}

# ---- Flink -----------------------------------------------------------------
# The workshop runs Flink 1.20.1. PyPI's apache-flink-libraries sdist carries
# the binary distribution's lib/ (flink-dist and friends), so no Docker image
# and no download outside a package registry is needed.
FLINK_VERSION=1.20.1
FLINK_CACHE="${KART_FLINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kart/flink}"
FLINK_HOME_DIR="$FLINK_CACHE/flink-$FLINK_VERSION"
# Test-only ports: 18081 is the workshop's JobManager and kart's default, so a
# student's cluster and the tests' never meet.
FLINK_REST_PORT="${KART_TEST_FLINK_PORT:-18581}"
FLINK_RPC_PORT="${KART_TEST_FLINK_RPC_PORT:-18582}"
FLINK_STATE="$STATE/flink"

ensure_java() {
  command -v javac >/dev/null 2>&1 && flink_java >/dev/null 2>&1 && return 0
  say "java: installing Debian's openjdk-17-jdk-headless (Flink and the test jobs need Java 17)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
}

ensure_flink() {
  ensure_java
  if [ -f "$FLINK_HOME_DIR/lib/flink-dist-$FLINK_VERSION.jar" ]; then say "flink: $FLINK_HOME_DIR"; return 0; fi
  mkdir -p "$FLINK_CACHE"
  local sdist="$FLINK_CACHE/apache-flink-libraries-$FLINK_VERSION.tar.gz"
  if [ ! -f "$sdist" ]; then
    say "flink: downloading apache-flink-libraries $FLINK_VERSION from PyPI (230 MB, once)"
    local pip=(python3 -m pip)
    "${pip[@]}" --version >/dev/null 2>&1 || pip=(pip3)
    # The sdist, not a wheel: it is the one that holds deps/lib.
    "${pip[@]}" download --quiet --no-deps --no-binary :all: "apache-flink-libraries==$FLINK_VERSION" -d "$FLINK_CACHE"
  fi
  local tmp; tmp=$(mktemp -d "$FLINK_CACHE/extract.XXXXXX")
  tar xzf "$sdist" -C "$tmp" "apache-flink-libraries-$FLINK_VERSION/deps/lib"
  # A rename, so an interrupted extraction never looks complete.
  mv "$tmp/apache-flink-libraries-$FLINK_VERSION/deps" "$FLINK_HOME_DIR"
  rm -rf "$tmp" "$sdist"
  say "flink: unpacked into $FLINK_HOME_DIR"
}

flink_java() {
  if [ -n "${KART_JAVA:-}" ]; then echo "$KART_JAVA"; return 0; fi
  if [ -x /usr/bin/java ]; then echo /usr/bin/java; return 0; fi
  command -v java
}

# Flink's launch scripts put flink-dist last on the classpath; so do we.
flink_classpath() {
  local cp="" jar
  for jar in "$FLINK_HOME_DIR"/lib/*.jar; do
    case "$jar" in */flink-dist-*) ;; *) cp="$cp:$jar" ;; esac
  done
  echo "${cp#:}:$FLINK_HOME_DIR/lib/flink-dist-$FLINK_VERSION.jar"
}

flink_write_conf() {
  local conf="$FLINK_STATE/conf"
  mkdir -p "$conf" "$FLINK_STATE/log" "$FLINK_STATE/tmp" "$FLINK_STATE/savepoints" "$FLINK_STATE/uploads"
  cat > "$conf/config.yaml" <<CONF
# Written by scripts/services.sh: kart's test cluster.
jobmanager.rpc.address: localhost
jobmanager.rpc.port: $FLINK_RPC_PORT
jobmanager.bind-host: 127.0.0.1
rest.address: localhost
rest.bind-address: 127.0.0.1
rest.port: $FLINK_REST_PORT
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
# Enough slots for the integration tests running in parallel.
taskmanager.numberOfTaskSlots: 16
# TaskManagerRunner started without Flink's shell scripts needs every size
# the scripts would otherwise compute (network min = max).
taskmanager.cpu.cores: 2
taskmanager.memory.framework.heap.size: 128m
taskmanager.memory.task.heap.size: 512m
taskmanager.memory.framework.off-heap.size: 128m
taskmanager.memory.task.off-heap.size: 0m
taskmanager.memory.network.min: 64m
taskmanager.memory.network.max: 64m
taskmanager.memory.managed.size: 128m
taskmanager.memory.jvm-metaspace.size: 256m
taskmanager.memory.jvm-overhead.min: 192m
taskmanager.memory.jvm-overhead.max: 192m
# The workshop's cluster settings.
heartbeat.interval: 1000
heartbeat.timeout: 5000
state.savepoints.dir: file://$FLINK_STATE/savepoints
# A job failing at start fails at once instead of restarting.
restart-strategy.type: none
io.tmp.dirs: $FLINK_STATE/tmp
web.upload.dir: $FLINK_STATE/uploads
CONF
  cat > "$conf/log4j.properties" <<'CONF'
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = RollingFile
appender.main.append = true
appender.main.fileName = ${sys:log.file}
appender.main.filePattern = ${sys:log.file}.%i
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
appender.main.policies.type = Policies
appender.main.policies.size.type = SizeBasedTriggeringPolicy
appender.main.policies.size.size = 50MB
appender.main.strategy.type = DefaultRolloverStrategy
appender.main.strategy.max = 3
logger.akka.name = org.apache.pekko
logger.akka.level = WARN
logger.netty.name = org.apache.flink.shaded.netty4.io.netty
logger.netty.level = WARN
CONF
}

# Java 17 needs these for Flink (from Flink's default config.yaml).
FLINK_JAVA_OPTS=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

flink_start() { # role main-class heap direct
  local role=$1 main=$2 heap=$3 direct=$4 java
  java=$(flink_java)
  # A pid file whose process is gone, or is someone else's now, is stale.
  if [ -f "$FLINK_STATE/$role.pid" ] && ps -p "$(cat "$FLINK_STATE/$role.pid")" -o args= 2>/dev/null | grep -q "$main"; then
    say "flink: $role running (pid $(cat "$FLINK_STATE/$role.pid"))"; return 0
  fi
  nohup "$java" -Xms"$heap" -Xmx"$heap" -XX:MaxDirectMemorySize="$direct" -XX:MaxMetaspaceSize=256m \
    "${FLINK_JAVA_OPTS[@]}" \
    -Dlog.file="$FLINK_STATE/log/$role.log" \
    -Dlog4j.configuration="file:$FLINK_STATE/conf/log4j.properties" \
    -Dlog4j.configurationFile="file:$FLINK_STATE/conf/log4j.properties" \
    -classpath "$(flink_classpath)" "$main" --configDir "$FLINK_STATE/conf" \
    > "$FLINK_STATE/log/$role.out" 2>&1 < /dev/null &
  echo $! > "$FLINK_STATE/$role.pid"
  say "flink: $role started (pid $!; log $FLINK_STATE/log/$role.log)"
}

flink_taskmanagers() {
  curl -fsS --max-time 2 "http://localhost:$FLINK_REST_PORT/overview" 2>/dev/null \
    | sed -n 's/.*"taskmanagers":\([0-9]*\).*/\1/p'
}

flink_up() {
  ensure_flink
  flink_write_conf
  flink_start jobmanager org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint 512m 128m
  flink_start taskmanager org.apache.flink.runtime.taskexecutor.TaskManagerRunner 640m 192m
  local tms
  for _ in $(seq 1 240); do
    tms=$(flink_taskmanagers || true)
    if [ -n "$tms" ] && [ "$tms" -ge 1 ]; then
      say "flink: REST on http://localhost:$FLINK_REST_PORT with $tms TaskManager(s)"; return 0
    fi
    for role in jobmanager taskmanager; do
      if ! kill -0 "$(cat "$FLINK_STATE/$role.pid")" 2>/dev/null; then
        say "flink: the $role exited; its last lines:"; tail -n 20 "$FLINK_STATE/log/$role.out" "$FLINK_STATE/log/$role.log" >&2 || true
        return 1
      fi
    done
    sleep 0.5
  done
  say "flink: no TaskManager registered within 120 s; see $FLINK_STATE/log/"; return 1
}

flink_down() {
  local role pid
  for role in taskmanager jobmanager; do
    [ -f "$FLINK_STATE/$role.pid" ] || continue
    pid=$(cat "$FLINK_STATE/$role.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$FLINK_STATE/$role.pid"; say "flink: $role stopped"
  done
}

case "${1:-}" in
  ensure-tansu) ensure_tansu ;;
  test-up) start_postgres "$STATE/test-pg" "$TEST_PG_PORT" postgres ;;
  test-down) stop_postgres "$STATE/test-pg" ;;
  dev-up) ensure_tansu; start_dev_tansu; start_postgres "$STATE/dev-pg" 5432 postgres ;;
  dev-down)
    if [ -f "$STATE/dev/tansu.pid" ]; then
      pid=$(cat "$STATE/dev/tansu.pid")
      kill "$pid" 2>/dev/null || true
      # tansu may not act on SIGTERM promptly: give it 5 s, then insist.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$STATE/dev/tansu.pid"; say "tansu: stopped"
    fi
    stop_postgres "$STATE/dev-pg" ;;
  test-images) test_images ;;
  test-images-down) stop_registry ;;
  ensure-flink) ensure_flink ;;
  flink-up) flink_up ;;
  flink-down) flink_down ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
