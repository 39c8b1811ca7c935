#!/usr/bin/env bash
# Builds the pgwarden image from docker/Dockerfile and runs docker/compose.yaml end to end:
# compose up, an Alembic migration through the containerised pgwarden (one revision applied,
# one rewritten, one refused), `pgwarden audit report` inside the container, compose down.
# Works offline (no Docker Hub): base image from mmdebstrap, packages from Debian's archive,
# crates from crates.io. Run it by hand or as a scheduled job: a cold run does a full release
# build inside the image (measured in README "Docker"), too slow for every run of tests/run.sh.
#
# Runs as root on Debian 12. It leaves the host as it found it:
#   - installs docker.io, docker-compose and mmdebstrap only if missing (with a policy-rc.d that
#     keeps the packages from starting a default-mode dockerd), and purges exactly the packages
#     it installed at the end (PGWARDEN_DOCKER_KEEP_PACKAGES=1 keeps them);
#   - its own dockerd with --iptables=false --ip-forward=false --bridge=none (no iptables rules,
#     no ip_forward change, no docker0 bridge), its own data-root/exec-root/socket in a temp
#     dir, stopped by its pid and removed at the end (also on failure, Ctrl-C or SIGTERM);
#   - containers use the host network on free loopback ports.
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt, for an HTTPS proxy)
# go into a test-only build base image, never into docker/Dockerfile.
#
# Environment:
#   PGWARDEN_DOCKER_TIMEOUT=SECONDS  time bound of the whole run (default 3600); when it is
#       exceeded the step running is stopped, the run fails (exit 124) naming that step, and
#       cleans up as on any failure.
#   PGWARDEN_DOCKER_CACHE=DIR  keep dockerd's data-root in DIR between runs (created if missing,
#       nothing else is kept, `rm -rf DIR` removes it all; one run at a time per DIR). A warm run
#       reuses the imported base image (no mmdebstrap; re-made after 7 days), Docker's layer
#       cache (apt layers, the PostgreSQL stand-in), and a test-only build base that holds the
#       compiled dependencies and the crates of the last build (made from that build's own
#       stage, refreshed when Cargo.lock, Cargo.toml or the compiler change; pgwarden's own
#       artifacts are removed from it, so the crate is always compiled from the sources sent).
#       docker/Dockerfile is the same either way. Leave the work tree alone during such a run: the
#       cache image comes from a second build of the build stage, which a changed tree turns into
#       a second compile of pgwarden.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
[[ $(id -u) -eq 0 ]] || { echo "docker/test.sh: run as root (it starts its own dockerd)" >&2; exit 1; }

t0=$(date +%s)
timeout_s="${PGWARDEN_DOCKER_TIMEOUT:-3600}"
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "docker/test.sh: PGWARDEN_DOCKER_TIMEOUT=$timeout_s is not a number of seconds" >&2; exit 1; }
deadline=$((t0 + timeout_s))
phase_name="start"
phase_t=$t0
phase_times=()
phase() {
    local now
    now=$(date +%s)
    phase_times+=("$(printf '%5ds  %s' $((now - phase_t)) "$phase_name")")
    phase_name="$*"
    phase_t=$now
    echo "== [$((now - t0))s] $*"
}

work="$(mktemp -d /tmp/pgwarden-docker.XXXXXX)"
cache="${PGWARDEN_DOCKER_CACHE:-}"
data="$work/data"
if [[ -n $cache ]]; then
    mkdir -p "$cache"
    cache="$(cd "$cache" && pwd)"
    data="$cache/data"
fi
installed=()
policy_rc_d=false
dockerd_pid=""
current=""
compose_up=false
before_forward="$(cat /proc/sys/net/ipv4/ip_forward)"
before_links="$(ls /sys/class/net | sort | tr '\n' ' ')"
# Paths dockerd and its containerd create outside data-root/exec-root whatever the flags say
# (the trust key, the plugin socket dir, containerd's shim socket dir): removed at the end
# unless they were there before.
host_paths=(/etc/docker /run/docker /run/containerd)
new_paths=()
for p in "${host_paths[@]}"; do [[ -e $p ]] || new_paths+=("$p"); done
# Our containers' cgroups live under a parent of our own (removed at the end); its CPU
# accounting says how much CPU the builds and containers took, whatever else the machine ran.
cgroup="${work##*/}"
container_cpu() {
    local v
    if [[ -r /sys/fs/cgroup/cpuacct/$cgroup/cpuacct.usage ]]; then
        v=$(cat "/sys/fs/cgroup/cpuacct/$cgroup/cpuacct.usage") && echo $((v / 1000000000))
    elif [[ -r /sys/fs/cgroup/$cgroup/cpu.stat ]]; then
        v=$(awk '$1 == "usage_usec" {print $2}' "/sys/fs/cgroup/$cgroup/cpu.stat") && echo $((v / 1000000))
    fi
}
cpu_s=""
# iptables comes with docker.io: its rules are read just before our dockerd starts.
iptables_rules() { iptables-save 2>/dev/null | grep -v '^#' || true; }
before_iptables=""

cleanup() {
    local rc=$?
    set +e
    trap '' INT TERM
    if [[ -n $current ]]; then
        # The step that was running (its own process group, under `timeout`).
        kill -TERM "$current" 2>/dev/null
        wait "$current" 2>/dev/null
    fi
    phase "cleanup"
    if $compose_up; then
        echo "   compose down"
        timeout 120 docker-compose -p pgwarden-test -f docker/compose.yaml down -v --timeout 10 >/dev/null 2>&1
    fi
    if [[ -n $dockerd_pid ]]; then
        echo "   stopping dockerd (pid $dockerd_pid)"
        kill "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$dockerd_pid" 2>/dev/null
        # containerd and its shims, started by our dockerd, name our exec-root on their command line.
        for p in $(pgrep -f "$work/" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        cpu_s="$(container_cpu)"
        for d in /sys/fs/cgroup/*/"$cgroup" /sys/fs/cgroup/"$cgroup"; do
            [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        done
    fi
    # Mounts dockerd may have left under its data-root or exec-root.
    grep -F -e " $work/" -e " $data/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
    [[ -n $dockerd_pid ]] && for p in "${new_paths[@]}"; do rm -rf "$p"; done
    local after_iptables=""
    [[ -n $dockerd_pid ]] && command -v iptables-save >/dev/null && after_iptables="$(iptables_rules)"
    if ((${#installed[@]})) && [[ ${PGWARDEN_DOCKER_KEEP_PACKAGES:-0} != 1 ]]; then
        echo "   purging the packages this script installed: ${installed[*]}"
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get purge -y -q "${installed[@]}" >/dev/null
    fi
    $policy_rc_d && rm -f /usr/sbin/policy-rc.d
    local after_forward after_links
    after_forward="$(cat /proc/sys/net/ipv4/ip_forward)"
    after_links="$(ls /sys/class/net | sort | tr '\n' ' ')"
    if [[ $after_forward != "$before_forward" || $after_links != "$before_links" ]]; then
        echo "docker/test.sh: host network changed: ip_forward $before_forward -> $after_forward, links [$before_links] -> [$after_links]" >&2
        rc=1
    fi
    if [[ $after_iptables != "$before_iptables" ]]; then
        echo "docker/test.sh: iptables rules changed:" >&2
        diff <(echo "$before_iptables") <(echo "$after_iptables") >&2
        rc=1
    fi
    [[ -n $cache ]] && echo "   cache $cache: $(du -sh "$cache" 2>/dev/null | cut -f1)"
    phase "done, exit $rc"
    echo "   phase durations:"
    printf '   %s\n' "${phase_times[@]:1}"
    [[ -n $cpu_s ]] && echo "   CPU time of all builds and containers: ${cpu_s}s (in $(($(date +%s) - t0))s wall, load average $(cut -d' ' -f1-3 /proc/loadavg))"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step [--quiet | --out FILE | --log FILE] CMD...: runs CMD within the time bound, its stdout
# to /dev/null or FILE (--log: stdout and stderr). In the background and waited for, so a signal
# to this script is acted on at once (bash runs a trap only after a foreground child has ended);
# `timeout` gives CMD its own process group and stops all of it on expiry or on our TERM. The
# redirections are CMD's own, never this function's: the cleanup a signal runs from inside it
# must write to the script's output.
step() {
    local out="" log="" left=$((deadline - $(date +%s))) rc=0
    case $1 in
        --quiet) out=/dev/null; shift ;;
        --out) out=$2; shift 2 ;;
        --log) log=$2; shift 2 ;;
    esac
    ((left > 0)) || left=1
    if [[ -n $log ]]; then
        timeout --kill-after=20 "$left" "$@" > "$log" 2>&1 &
    elif [[ -n $out ]]; then
        timeout --kill-after=20 "$left" "$@" > "$out" &
    else
        timeout --kill-after=20 "$left" "$@" &
    fi
    current=$!
    wait "$current" || rc=$?
    current=""
    if ((rc == 124 || rc == 137)) && (($(date +%s) >= deadline)); then
        echo "docker/test.sh: time bound exceeded: PGWARDEN_DOCKER_TIMEOUT=${timeout_s}s ran out during \"$phase_name\"; raise it, or use PGWARDEN_DOCKER_CACHE (see the header of docker/test.sh)" >&2
        exit 124
    fi
    return $rc
}
# until_ok TRIES DELAY CMD...: retries CMD until it succeeds, within the time bound.
until_ok() {
    local tries=$1 delay=$2
    shift 2
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        (($(date +%s) < deadline)) || break
        sleep "$delay"
    done
    "$@" >/dev/null 2>&1
}

if [[ -n $cache ]]; then
    exec 9>"$cache/lock"
    flock -n 9 || { echo "docker/test.sh: another docker/test.sh uses PGWARDEN_DOCKER_CACHE=$cache" >&2; exit 1; }
fi

# --- packages -----------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
[[ -x /usr/bin/docker-compose ]] || need+=(docker-compose)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]})); then
    phase "apt-get install ${need[*]}"
    dpkg-query -W -f '${Package}\n' | sort > "$work/pkgs.before"
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        # docker.io's postinst would start (or enable) a default-mode dockerd, which changes
        # iptables and ip_forward; policy-rc.d exit 101 forbids starting services.
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        policy_rc_d=true
    fi
    step --quiet apt-get update -q
    step --quiet apt-get install -y -q --no-install-recommends "${need[@]}"
    dpkg-query -W -f '${Package}\n' | sort > "$work/pkgs.after"
    mapfile -t installed < <(comm -13 "$work/pkgs.before" "$work/pkgs.after")
fi
docker=/usr/bin/docker   # the docker.io client, matching its daemon
# docker-compose v1 runs `docker`-less, but anything else must find this client first.
export PATH="/usr/bin:$PATH"

# --- our own dockerd ------------------------------------------------------------------------
phase "dockerd (data-root $data)"
mkdir -p "$data" "$work/exec"
command -v iptables-save >/dev/null && before_iptables="$(iptables_rules)"
dockerd --iptables=false --ip-forward=false --bridge=none \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$cgroup" \
    --data-root "$data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$work/docker.sock" > "$work/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$work/docker.sock"
until_ok 60 0.5 $docker info || { cat "$work/dockerd.log" >&2; exit 1; }
if [[ -n $cache ]]; then
    # What an interrupted run may have left in the kept data-root.
    $docker ps -aq | xargs -r $docker rm -f >/dev/null
    $docker volume prune -f >/dev/null
fi

# --- base images (no registry) -----------------------------------------------------------------
base_age_days=-1
if created="$($docker image inspect -f '{{.Created}}' debian:bookworm-slim 2>/dev/null)"; then
    base_age_days=$((($(date +%s) - $(date -d "$created" +%s)) / 86400))
fi
if ((base_age_days < 0 || base_age_days >= 7)); then
    phase "mmdebstrap bookworm -> debian:bookworm-slim"
    step --quiet mmdebstrap --quiet --variant=minbase bookworm "$work/rootfs.tar"
    step --quiet $docker import "$work/rootfs.tar" debian:bookworm-slim
    rm -f "$work/rootfs.tar"
    # Images built on the old base would be rebuilt anyway; drop the cargo one with it.
    $docker rmi -f pgwarden-test/cargo-base >/dev/null 2>&1 || true
else
    phase "debian:bookworm-slim from the cache ($base_age_days days old)"
fi
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
step --quiet $docker build -q --network=host -t pgwarden-test/build-base "$work/ca"

# --- images ------------------------------------------------------------------------------------
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
build_base=pgwarden-test/build-base
if $docker image inspect pgwarden-test/cargo-base >/dev/null 2>&1; then
    build_base=pgwarden-test/cargo-base
fi
build_args=(--network=host -f docker/Dockerfile --build-arg BUILD_BASE=$build_base
            --build-arg PGWARDEN_GIT_COMMIT="$commit")
phase "docker build pgwarden (release build inside the image, on $build_base)"
step --log "$work/build.log" $docker build "${build_args[@]}" -t pgwarden:latest . \
    || { tail -40 "$work/build.log" >&2; exit 1; }
grep -o 'Finished .*' "$work/build.log" | sed 's/^/   cargo: /' || true
phase "image checks"
echo "   image: $($docker image inspect -f "{{.Size}}" pgwarden:latest | awk "{printf \"%.1f MB\", \$1/1e6}")"
version="$($docker run --rm --network none --entrypoint /usr/local/bin/pgwarden pgwarden:latest --version)"
[[ $version == "pgwarden $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) ($commit)" ]] \
    || { echo "unexpected --version: $version" >&2; exit 1; }
echo "   $version"
user="$($docker image inspect -f '{{.Config.User}}' pgwarden:latest)"
[[ $user == pgwarden ]] || { echo "image runs as '$user', not pgwarden" >&2; exit 1; }

if [[ -n $cache ]]; then
    # The next run's build base: this build's own build stage (Debian's Rust installed, crates in
    # /root/.cargo, dependencies compiled in /src/target) without the sources and without
    # pgwarden's own artifacts, flattened (docker export | import) so it does not stack layers.
    # The build stage again: every step is in the layer cache, so this only tags it.
    step --quiet $docker build -q "${build_args[@]}" --target build -t pgwarden-test/build-stage .
    rustc_v="$($docker run --rm --network none --entrypoint rustc pgwarden-test/build-stage -V)"
    key="$( (cat Cargo.lock Cargo.toml; echo "$rustc_v") | sha256sum | cut -c1-16)"
    if [[ $($docker image inspect -f '{{index .Config.Labels "pgwarden.key"}}' pgwarden-test/cargo-base 2>/dev/null || true) != "$key" ]]; then
        phase "refresh the cargo cache image (pgwarden-test/cargo-base, $rustc_v)"
        $docker rm -f pgwarden-test-cargo >/dev/null 2>&1 || true
        step $docker run --name pgwarden-test-cargo --network none --entrypoint bash pgwarden-test/build-stage -c \
            'cd /src && rm -rf src benches tests Cargo.toml Cargo.lock build.rs \
             && rm -rf target/release/pgwarden* target/release/libpgwarden* \
                       target/release/deps/pgwarden-* target/release/deps/libpgwarden-* \
                       target/release/.fingerprint/pgwarden-* target/release/build/pgwarden-*'
        step $docker export -o "$work/cargo-base.tar" pgwarden-test-cargo
        step --quiet $docker import --change 'WORKDIR /src' --change "LABEL pgwarden.key=$key" \
            "$work/cargo-base.tar" pgwarden-test/cargo-base
        rm -f "$work/cargo-base.tar"
        $docker rm -f pgwarden-test-cargo >/dev/null
    fi
    $docker rmi pgwarden-test/build-stage >/dev/null
fi

phase "docker build postgres:15 stand-in (docker/test-postgres)"
step --quiet $docker build -q --network=host -t postgres:15 docker/test-postgres

# --- compose up, migrate, down -----------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export POSTGRES_PORT="$(free_port)" PGWARDEN_PORT="$(free_port)" PGWARDEN_ADMIN_PORT="$(free_port)" POSTGRES_PASSWORD="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
phase "compose up (postgres on 127.0.0.1:$POSTGRES_PORT, pgwarden on 127.0.0.1:$PGWARDEN_PORT)"
compose_up=true
step docker-compose -p pgwarden-test -f docker/compose.yaml up -d --no-build
export PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD="$POSTGRES_PASSWORD" PGDATABASE=postgres PGCONNECT_TIMEOUT=5
psql=/usr/lib/postgresql/15/bin/psql
until_ok 120 0.5 env PGPORT="$POSTGRES_PORT" $psql -XAtqc 'SELECT 1'
until_ok 60 0.5 env PGPORT="$PGWARDEN_PORT" $psql -XAtqc 'SELECT 1'
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
step env PGPORT="$POSTGRES_PORT" $psql -Xq -v ON_ERROR_STOP=1 -c "
CREATE TABLE events (id bigint PRIMARY KEY, account_id integer NOT NULL, kind text NOT NULL,
                     payload text, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO events SELECT g, 1 + g % 5000, 'kind' || (g % 7), 'x', now() - g * interval '1 second'
FROM generate_series(1, 1000000) g;
ANALYZE events;"

phase "Alembic through the containerised pgwarden"
venv="${PGWARDEN_TEST_VENV:-target/test-venv}"
step bash tests/python/setup-venv.sh "$venv"
[[ $venv == /* ]] || venv="$repo/$venv"
cp -r src/demo/project "$work/alembic"
export PGWARDEN_DEMO_URL="postgresql+psycopg2://postgres@127.0.0.1:$PGWARDEN_PORT/postgres?sslmode=disable"
alembic() { step --log "$work/up-$2.log" env -C "$work/alembic" "$venv/bin/python" -m alembic -c alembic.ini "$@"; }
alembic upgrade d02 \
    || { cat "$work/up-d02.log" >&2; echo "d01+d02 were refused" >&2; exit 1; }
if alembic upgrade d03; then
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
step --out "$work/report.txt" docker-compose -p pgwarden-test -f docker/compose.yaml exec -T pgwarden \
    pgwarden audit report /var/log/pgwarden/audit.jsonl
sed 's/^/   /' "$work/report.txt"
grep -q "decisions: allow 2, warn 0, rewrite 1, reject 1" "$work/report.txt" \
    || { echo "audit report does not show allow 2 / rewrite 1 / reject 1" >&2; exit 1; }
if [[ -n $cache ]]; then
    # Keep the cache bounded: the previous runs' pgwarden images and their build layers.
    $docker image prune -f >/dev/null
fi
echo "docker/test.sh: OK"
