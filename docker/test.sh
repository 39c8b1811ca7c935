#!/usr/bin/env bash
# Builds the pgwarden image from docker/Dockerfile and runs docker/compose.yaml end to end:
# compose up, an Alembic migration through the containerised pgwarden (one revision applied,
# one rewritten, one refused), `pgwarden audit report` inside the container, compose down.
# Works offline (no Docker Hub): base image from mmdebstrap, packages from Debian's archive,
# crates from crates.io. Run it by hand or as a scheduled job (a full release build inside an
# image: ~20-30 min on 2 cores, too slow for every run of tests/run.sh).
#
# Runs as root on Debian 12. It leaves the host as it found it:
#   - installs docker.io, docker-compose and mmdebstrap only if missing, and purges exactly the
#     packages it installed at the end (PGWARDEN_DOCKER_KEEP_PACKAGES=1 keeps them);
#   - its own dockerd with --iptables=false --ip-forward=false --bridge=none (no iptables rules,
#     no ip_forward change, no docker0 bridge), its own data-root/exec-root/socket in a temp
#     dir, stopped by its pid and removed at the end (also on failure or Ctrl-C);
#   - containers use the host network on free loopback ports.
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt, for an HTTPS proxy)
# go into a test-only build base image, never into docker/Dockerfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
[[ $(id -u) -eq 0 ]] || { echo "docker/test.sh: run as root (it starts its own dockerd)" >&2; exit 1; }

t0=$(date +%s)
phase() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

work="$(mktemp -d /tmp/pgwarden-docker.XXXXXX)"
installed=()
dockerd_pid=""
compose_up=false
before_forward="$(cat /proc/sys/net/ipv4/ip_forward)"
before_links="$(ls /sys/class/net | sort | tr '\n' ' ')"

cleanup() {
    local rc=$?
    set +e
    if $compose_up; then
        phase "compose down"
        docker-compose -p pgwarden-test -f docker/compose.yaml down -v --timeout 10 >/dev/null 2>&1
    fi
    if [[ -n $dockerd_pid ]]; then
        phase "stopping dockerd (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$dockerd_pid" 2>/dev/null
        # containerd shims of our daemon live under our exec-root.
        for p in $(pgrep -f "$work" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    fi
    # Mounts dockerd may have left under its data-root.
    grep " $work" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
    if ((${#installed[@]})) && [[ ${PGWARDEN_DOCKER_KEEP_PACKAGES:-0} != 1 ]]; then
        phase "purging the packages this script installed: ${installed[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${installed[@]}" >/dev/null
    fi
    local after_forward after_links
    after_forward="$(cat /proc/sys/net/ipv4/ip_forward)"
    after_links="$(ls /sys/class/net | sort | tr '\n' ' ')"
    if [[ $after_forward != "$before_forward" || $after_links != "$before_links" ]]; then
        echo "docker/test.sh: host network changed: ip_forward $before_forward -> $after_forward, links [$before_links] -> [$after_links]" >&2
        rc=1
    fi
    phase "done, exit $rc"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- packages -----------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
[[ -x /usr/bin/docker-compose ]] || need+=(docker-compose)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]})); then
    phase "apt-get install ${need[*]}"
    dpkg-query -W -f '${Package}\n' | sort > "$work/pkgs.before"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    # policy-rc.d keeps the package from starting a default-mode dockerd (iptables changes).
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
    dpkg-query -W -f '${Package}\n' | sort > "$work/pkgs.after"
    mapfile -t installed < <(comm -13 "$work/pkgs.before" "$work/pkgs.after")
fi
docker=/usr/bin/docker   # the docker.io client, matching its daemon

# --- our own dockerd ------------------------------------------------------------------------
phase "dockerd (data-root $work/data)"
mkdir -p "$work/data" "$work/exec"
dockerd --iptables=false --ip-forward=false --bridge=none \
    --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$work/docker.sock" > "$work/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$work/docker.sock"
for _ in $(seq 1 60); do $docker info >/dev/null 2>&1 && break; sleep 0.5; done
$docker info >/dev/null 2>&1 || { cat "$work/dockerd.log" >&2; exit 1; }
# docker-compose v1 finds the daemon through DOCKER_HOST too; the client must be this one.
export PATH="/usr/bin:$PATH"

# --- base images (no registry) -----------------------------------------------------------------
phase "mmdebstrap bookworm -> debian:bookworm-slim"
mmdebstrap --quiet --variant=minbase bookworm "$work/rootfs.tar" >/dev/null
$docker import "$work/rootfs.tar" debian:bookworm-slim >/dev/null
rm -f "$work/rootfs.tar"
mkdir -p "$work/ca"
cp /usr/local/share/ca-certificates/*.crt "$work/ca/" 2>/dev/null || true
cat > "$work/ca/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY . /usr/local/share/ca-certificates/
RUN rm -f /usr/local/share/ca-certificates/Dockerfile \
 && apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && update-ca-certificates && rm -rf /var/lib/apt/lists/*
DOCKERFILE
phase "test-only build base with the host's CA certificates"
$docker build -q --network=host -t pgwarden-test/build-base "$work/ca" >/dev/null

# --- images ------------------------------------------------------------------------------------
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
phase "docker build pgwarden (release build inside the image)"
$docker build --network=host -f docker/Dockerfile \
    --build-arg BUILD_BASE=pgwarden-test/build-base \
    --build-arg PGWARDEN_GIT_COMMIT="$commit" \
    -t pgwarden:latest . > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
phase "image: $($docker image inspect -f "{{.Size}}" pgwarden:latest | awk "{printf \"%.1f MB\", \$1/1e6}")"
version="$($docker run --rm --entrypoint /usr/local/bin/pgwarden pgwarden:latest --version)"
[[ $version == "pgwarden $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) ($commit)" ]] \
    || { echo "unexpected --version: $version" >&2; exit 1; }
user="$($docker image inspect -f '{{.Config.User}}' pgwarden:latest)"
[[ $user == pgwarden ]] || { echo "image runs as '$user', not pgwarden" >&2; exit 1; }
phase "docker build postgres:15 stand-in (docker/test-postgres)"
$docker build -q --network=host -t postgres:15 docker/test-postgres >/dev/null

# --- compose up, migrate, down -----------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export POSTGRES_PORT="$(free_port)" PGWARDEN_PORT="$(free_port)" PGWARDEN_ADMIN_PORT="$(free_port)" POSTGRES_PASSWORD="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
phase "compose up (postgres on 127.0.0.1:$POSTGRES_PORT, pgwarden on 127.0.0.1:$PGWARDEN_PORT)"
compose_up=true
docker-compose -p pgwarden-test -f docker/compose.yaml up -d --no-build
export PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD="$POSTGRES_PASSWORD" PGDATABASE=postgres PGCONNECT_TIMEOUT=5
psql=/usr/lib/postgresql/15/bin/psql
for _ in $(seq 1 120); do PGPORT=$POSTGRES_PORT $psql -XAtqc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
for _ in $(seq 1 60); do PGPORT=$PGWARDEN_PORT $psql -XAtqc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
PGPORT=$PGWARDEN_PORT $psql -XAtqc 'SELECT 1' >/dev/null
# The image's HEALTHCHECK (compose: on PGWARDEN_ADMIN_PORT) asks /readyz: wait for "healthy".
cid="$(docker-compose -p pgwarden-test -f docker/compose.yaml ps -q pgwarden)"
health=""
for _ in $(seq 1 60); do
    health="$($docker inspect -f '{{.State.Health.Status}}' "$cid")"
    [[ $health == healthy ]] && break
    sleep 1
done
[[ $health == healthy ]] || { $docker inspect -f '{{json .State.Health}}' "$cid" >&2; echo "pgwarden container is $health, not healthy" >&2; exit 1; }
echo "   container health: $health (/readyz on 127.0.0.1:$PGWARDEN_ADMIN_PORT)"

phase "1,000,000-row table, loaded directly"
PGPORT=$POSTGRES_PORT $psql -Xq -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE events (id bigint PRIMARY KEY, account_id integer NOT NULL, kind text NOT NULL,
                     payload text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO events SELECT g, 1 + g % 5000, 'kind' || (g % 7), 'x', now() - g * interval '1 second'
FROM generate_series(1, 1000000) g;
ANALYZE events;
SQL

phase "Alembic through the containerised pgwarden"
venv="${PGWARDEN_TEST_VENV:-target/test-venv}"
bash tests/python/setup-venv.sh "$venv"
[[ $venv == /* ]] || venv="$repo/$venv"
cp -r src/demo/project "$work/alembic"
export PGWARDEN_DEMO_URL="postgresql+psycopg2://postgres@127.0.0.1:$PGWARDEN_PORT/postgres?sslmode=disable"
(cd "$work/alembic" && "$venv/bin/python" -m alembic -c alembic.ini upgrade d02) > "$work/up-d02.log" 2>&1 \
    || { cat "$work/up-d02.log" >&2; echo "d01+d02 were refused" >&2; exit 1; }
if (cd "$work/alembic" && "$venv/bin/python" -m alembic -c alembic.ini upgrade d03) > "$work/up-d03.log" 2>&1; then
    cat "$work/up-d03.log" >&2; echo "d03 was applied through pgwarden" >&2; exit 1
fi
grep -q "adding-field-with-default" "$work/up-d03.log" || { cat "$work/up-d03.log" >&2; exit 1; }
grep "^sqlalchemy.exc" "$work/up-d03.log" | sed 's/^/   alembic: /'
got="$(PGPORT=$POSTGRES_PORT $psql -XAtc "SELECT version_num FROM alembic_version")|$(PGPORT=$POSTGRES_PORT $psql -XAtc "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_events_created_at'::regclass")|$(PGPORT=$POSTGRES_PORT $psql -XAtc "SELECT count(*) FROM information_schema.columns WHERE table_name='events' AND column_name='shard'")"
[[ $got == "d02|t|0" ]] || { echo "database state $got, want d02|t|0" >&2; exit 1; }
echo "   alembic_version d02, index ix_events_created_at valid (CONCURRENTLY), events.shard absent"

phase "/metrics of the containerised pgwarden"
metrics="$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$PGWARDEN_ADMIN_PORT/metrics")"
grep -E '^pgwarden_statements_analysed_total\{.*decision="reject".*\} [1-9]' <<<"$metrics" \
    || { echo "no rejected statement counted in /metrics:" >&2; grep pgwarden_statements <<<"$metrics" >&2; exit 1; }

phase "pgwarden audit report, inside the container"
docker-compose -p pgwarden-test -f docker/compose.yaml exec -T pgwarden \
    pgwarden audit report /var/log/pgwarden/audit.jsonl > "$work/report.txt"
sed 's/^/   /' "$work/report.txt"
grep -q "decisions: allow 2, warn 0, rewrite 1, reject 1" "$work/report.txt" \
    || { echo "audit report does not show allow 2 / rewrite 1 / reject 1" >&2; exit 1; }
echo "docker/test.sh: OK"
