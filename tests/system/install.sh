#!/bin/sh
# System packages the tests use, from Debian: a PostgreSQL built with TLS (the
# embedded one is not), promtool (checks deploy/prometheus-rules.yml) and a
# real Alertmanager (sends its webhooks to `router ingest` in the tests) and
# Chromium (opens an ack link in tests/integration/test_ack_link.py) and valgrind
# (bench/instructions.py counts instructions under it, bench/cache_misses.py cache misses;
# tests/integration/test_bench.py).
# Installs only what is missing; needs root (as in CI) when something is.
# Several `make test` runs at once take turns (flock) and re-check inside.
set -eu

missing() {
    need=""
    [ -x /usr/lib/postgresql/15/bin/postgres ] || need="$need postgresql-15"
    command -v promtool >/dev/null 2>&1 || need="$need prometheus"
    [ -x /usr/bin/prometheus-alertmanager ] || need="$need prometheus-alertmanager"
    [ -x /usr/bin/chromium ] || need="$need chromium"
    command -v valgrind >/dev/null 2>&1 || need="$need valgrind"
    echo "$need"
}

need=$(missing)
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "tests need these Debian packages:$need; install them as root (apt-get install$need)" >&2
    exit 1
fi
if [ -z "${ROUTER_INSTALL_LOCKED:-}" ]; then
    ROUTER_INSTALL_LOCKED=1 exec flock /tmp/router-system-packages.lock "$0" "$@"
fi
need=$(missing)  # another run may have installed them while this one waited
[ -z "$need" ] && exit 0
# No default cluster and no services: the tests start their own servers.
mkdir -p /etc/postgresql-common
grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
    || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
apt-get -o DPkg::Lock::Timeout=300 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends $need >/dev/null
if [ -n "$created_policy" ]; then rm -f "$policy"; fi
echo "installed:$need"
