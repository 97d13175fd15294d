#!/bin/sh
# System packages the tests use, from Debian: a PostgreSQL built with TLS (the
# embedded one is not) and promtool (checks deploy/prometheus-rules.yml).
# Installs only what is missing; needs root (as in CI) when something is.
set -eu
need=""
[ -x /usr/lib/postgresql/15/bin/postgres ] || need="$need postgresql-15"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "tests need these Debian packages:$need; install them as root (apt-get install$need)" >&2
    exit 1
fi
# No default cluster and no services: the tests start their own servers.
mkdir -p /etc/postgresql-common
grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
    || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
[ -n "$created_policy" ] && rm -f "$policy"
echo "installed:$need"
