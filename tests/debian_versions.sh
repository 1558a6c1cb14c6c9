#!/bin/bash
#
# tests/debian_versions.sh -- run the test suite under Debian bookworm's system Python with
# the library versions the Debian package depends on (python3-twisted 22.4, python3-lxml 4.9,
# python3-bcrypt 3.2, python3-openssl 23.0, python3-service-identity 18.1, python3-ldap3 2.9,
# python3-psycopg2 2.9.5, python3-mysqldb 1.4.6, python3-cryptography 38,
# python3-prometheus-client 0.16), instead of the current releases in .venv.
#
#   tests/debian_versions.sh [pytest arguments...]
#
# Called by `make test-debian-versions`. As root, installs whichever of those packages are
# missing (after checking with apt-cache policy that this system can install them); as
# another user, names the missing packages and stops. Prints the versions it tests, then runs
# /usr/bin/python3 -m pytest from the top of the tree with PYTHONPATH set to it: the twistd
# plugin is found in twisted/plugins/, and the gateway processes that the tests start run
# under the same interpreter (sys.executable), so they also use the Debian libraries.
#
# CI=true (the default here, as in .ci/run) makes a test fail instead of skipping when it
# cannot start its server (slapd, PostgreSQL, MariaDB).

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=/usr/bin/python3
packages=(
    python3-twisted python3-lxml python3-bcrypt python3-openssl python3-service-identity
    python3-ldap3 python3-psycopg2 python3-mysqldb python3-pytest python3-hypothesis
    python3-cryptography python3-prometheus-client
)

# The Debian libraries only: nothing from a virtualenv, pyenv or the user's site directory.
unset VIRTUAL_ENV PYENV_VERSION PYTHONHOME PYTHONSTARTUP
export PYTHONPATH=$top PYTHONNOUSERSITE=1 CI="${CI:-true}" DEBIAN_FRONTEND=noninteractive

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "debian-versions: missing Debian packages: ${missing[*]}" >&2
        echo "debian-versions: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -q
    for pkg in "${missing[@]}"; do
        candidate=$(apt-cache policy "$pkg" | awk '$1 == "Candidate:" { print $2 }')
        if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
            echo "debian-versions: $pkg has no installation candidate (apt-cache policy $pkg)" >&2
            exit 1
        fi
        echo "debian-versions: installing $pkg $candidate"
    done
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$python" ]; then
    echo "debian-versions: $python not found (Debian package python3)" >&2
    exit 1
fi

cd "$top"

# The versions under test, and a check that koha_gateway is this tree, not an installed copy.
"$python" - <<'EOF'
import importlib
import os
import sqlite3
import ssl
import sys

print(f"debian-versions: Python {sys.version.split()[0]} ({sys.executable})")
print(f"debian-versions: {ssl.OPENSSL_VERSION}, SQLite {sqlite3.sqlite_version}")
modules = [
    "twisted", "lxml.etree", "bcrypt", "OpenSSL", "service_identity", "ldap3", "psycopg2",
    "MySQLdb", "cryptography", "pytest", "hypothesis", "prometheus_client",
]
for name in modules:
    module = importlib.import_module(name)
    version = getattr(module, "__version__", "?")
    if name == "psycopg2":
        version = version.split()[0]
    if name == "MySQLdb":
        version = ".".join(str(part) for part in module.version_info[:3])
    print(f"debian-versions: {name:16} {version:10} {os.path.dirname(module.__file__)}")
    if not module.__file__.startswith("/usr/lib/python3/dist-packages/"):
        sys.exit(f"debian-versions: {name} is not the Debian package's copy")

import koha_gateway

tree = os.path.join(os.environ["PYTHONPATH"], "koha_gateway")
if os.path.dirname(koha_gateway.__file__) != tree:
    sys.exit(f"debian-versions: koha_gateway comes from {koha_gateway.__file__}, not {tree}")
EOF

exec "$python" -m pytest -p no:cacheprovider "$@"
