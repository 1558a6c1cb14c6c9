#!/bin/bash
#
# install-test.sh DEB -- the package test of koha-gateway (issue 6).
#
# On a Debian bookworm machine, as root, with nothing else serving the demo
# instance:
#   1. installs a stand-in koha-common holding Koha's four SIP commands, then
#      DEB with its Debian dependencies (apt); checks the twistd plugin
#      cache, the diversions of Koha's commands and the systemd unit;
#   2. koha-sip --enable demo (SIP-only instance: koha-conf.xml, SQLite
#      database, SIPconfig.xml mode 600 owned by the instance user);
#   3. loads the demo data with koha-gateway-admin;
#   4. koha-sip --start demo, then over SIP2: 93 -> 941 and a 64 for patron
#      23529000000001; logrotate, --status, --reload, --restart, a reinstall
#      (the upgrade path restarts the server and upgrades the database of a
#      second SIP-only instance made at release 0.1.0's schema version 2),
#      --stop, --disable and the older koha-enable-sip / koha-start-sip /
#      koha-stop-sip;
#   5. a Koha-style instance (its own <i>-koha user, as koha-create makes):
#      --enable and --start use that user;
#   6. a Koha instance lib1 on MariaDB holding Koha's own schema and
#      mandatory data (../shared/koha/load.sh, via koha-mariadb.sh), with
#      /etc/koha/sites/lib1/koha-conf.xml as koha-create writes it
#      (db_scheme mysql, hostname localhost, port 3306, database, user and
#      password koha_lib1): the installed package reads Koha's database
#      through that file as the instance user, and koha-sip --enable lib1
#      works. With KOHA_MARIADB_CIRCULATION=yes also: koha-gateway-admin
#      init and load-demo on the Koha database, koha-sip --start lib1, and
#      over SIP2 a login, patron information, a checkout and a checkin, then
#      the loan checked in Koha's tables (old_issues, items.onloan);
#   7. purges the package with both servers running and checks that nothing
#      is left running and that Koha's commands are back in place.
#
# KOHA_MARIADB_CIRCULATION (default yes): no skips the SIP2 circulation of
# step 6 on Koha's database (which creates only the gateway's kgw_ tables
# there).
#
# Exits 0 when every check passed. Leaves the machine as it found it: the
# instances and the kgwtest-koha user it created are removed at the end
# (the koha-gateway system user stays, as after any purge).

set -euo pipefail

deb=${1:?usage: install-test.sh path/to/koha-gateway_VERSION_all.deb}
deb=$(readlink -f -- "$deb")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
instance=demo
patron=23529000000001
koha_mariadb_circulation=${KOHA_MARIADB_CIRCULATION:-yes}

# Debian's tools and interpreter only (a pyenv or virtualenv python3 first on
# PATH would also break python3-twisted's plugin-cache trigger).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYENV_VERSION
export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8

site=/etc/koha/sites/$instance
sipconfig=$site/SIPconfig.xml
kohaconf=$site/koha-conf.xml
pidfile=/var/run/koha/$instance/$instance-koha-sip.pid
logdir=/var/log/koha/$instance
checks=0

step() { printf '\n==> %s\n' "$*"; }
ok() {
    checks=$((checks + 1))
    printf '    ok: %s\n' "$*"
}
dump_logs() {
    local f
    for f in "$logdir"/sip-output.log "$logdir"/sip-error.log "$logdir"/sip.log; do
        [ -f "$f" ] || continue
        printf -- '--- last lines of %s\n' "$f" >&2
        tail -n 30 -- "$f" >&2 || true
    done
}
fail() {
    printf '\nFAIL: %s\n' "$*" >&2
    dump_logs
    exit 1
}
# expect_rc RC COMMAND...: run COMMAND, fail unless it exits with RC.
expect_rc() {
    local want=$1 got=0
    shift
    "$@" || got=$?
    [ "$got" -eq "$want" ] || fail "'$*' exited $got, expected $want"
}
server_pids() {
    # Every process of this package's server, whoever started it.
    pgrep -f -- "twistd3 .*koha-gateway" || true
}
sip_probe() {
    /usr/bin/python3 "$here/sip2_probe.py" --sip-config "$sipconfig" --patron "$patron" \
        --timeout 15 || fail "SIP2 login / patron information ($*)"
    ok "SIP2 93 -> 941 and 63 -> 64 for $patron ($*)"
}
file_mode_owner() { stat -c '%a %U' -- "$1"; }
# contains TEXT PATTERN: TEXT contains PATTERN (no pipe into "grep -q": with
# pipefail, a writer cut off by grep's early exit would fail the check).
contains() { [[ "$1" == *"$2"* ]]; }
installed() { contains "$(dpkg-query -W -f='${Status}' koha-gateway 2>/dev/null || true)" "ok installed"; }
# kgw_tables KOHA_CONF: the gateway's kgw_ tables in the MariaDB database of
# that koha-conf.xml, one line each.
kgw_tables() {
    /usr/bin/python3 -c '
import sys
from koha_gateway.config.kohaconf import load_koha_conf
from koha_gateway.db import Database
db = Database.from_url(load_koha_conf(sys.argv[1]).database_url)
try:
    rows = db.run_blocking(lambda txn: txn.query(
        "SELECT table_name AS name FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name LIKE ?", ("kgw\\_%",)))
    print("\n".join(sorted(r["name"] for r in rows)))
finally:
    db.close()
' "$1"
}
# schema_version DB: the koha-gateway schema version of a SQLite database.
schema_version() {
    /usr/bin/python3 -c '
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = ?", ("table",))}
table = "kgw_schema_version" if "kgw_schema_version" in tables else "schema_version"
print(db.execute(f"SELECT MAX(version) FROM {table}").fetchone()[0])
' "$1"
}

created_instance=no
created_old_instance=no
old_instance=kgwold
created_koha_instance=no
installed_koha_common=no
kc_dir=""
koha_instance=kgwtest
lib1=lib1
created_lib1=no
mdb_dir=""
cleanup() {
    local rc=$?
    set +e
    if installed; then
        koha-sip --quiet --stop "$instance" >/dev/null 2>&1
        apt-get purge -y -q koha-gateway >/dev/null 2>&1
    fi
    for pid in $(server_pids); do kill "$pid" 2>/dev/null; done
    if [ "$installed_koha_common" = yes ]; then
        dpkg --purge koha-common >/dev/null 2>&1
        rm -rf -- "$kc_dir"
    fi
    if [ "$created_old_instance" = yes ]; then
        koha-sip --quiet --stop "$old_instance" >/dev/null 2>&1
        rm -rf -- "/etc/koha/sites/$old_instance" "/var/lib/koha/$old_instance" \
            "/var/log/koha/$old_instance" "/var/run/koha/$old_instance"
    fi
    if [ "$created_koha_instance" = yes ]; then
        rm -rf -- "/etc/koha/sites/$koha_instance" "/var/lib/koha/$koha_instance" \
            "/var/log/koha/$koha_instance" "/var/run/koha/$koha_instance"
        userdel "$koha_instance-koha" 2>/dev/null
        groupdel "$koha_instance-koha" 2>/dev/null
    fi
    if [ "$created_lib1" = yes ]; then
        rm -rf -- "/etc/koha/sites/$lib1" "/var/lib/koha/$lib1" "/var/log/koha/$lib1" \
            "/var/run/koha/$lib1"
        userdel "$lib1-koha" 2>/dev/null
        groupdel "$lib1-koha" 2>/dev/null
    fi
    if [ -n "$mdb_dir" ]; then
        "$here/koha-mariadb.sh" stop "$mdb_dir/data" >/dev/null 2>&1
        rm -rf -- "$mdb_dir"
    fi
    if [ "$created_instance" = yes ]; then
        rm -rf -- "$site" "/var/lib/koha/$instance" "$logdir" "/var/run/koha/$instance"
        rmdir /etc/koha/sites /etc/koha /var/lib/koha /var/log/koha /var/run/koha 2>/dev/null
    fi
    exit "$rc"
}

[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and purges a package)"
[ -f "$deb" ] || fail "no such package: $deb"
if dpkg-query -W koha-common >/dev/null 2>&1; then
    fail "koha-common is installed; run the package test on a machine without Koha"
fi
if installed; then
    fail "koha-gateway is already installed; purge it before running the package test"
fi
[ ! -e "$site" ] || fail "$site exists; the test needs a machine without the $instance instance"
[ ! -e "/etc/koha/sites/$koha_instance" ] && ! getent passwd "$koha_instance-koha" >/dev/null ||
    fail "instance $koha_instance or user $koha_instance-koha exists already"
[ ! -e "/etc/koha/sites/$old_instance" ] || fail "instance $old_instance exists already"
[ ! -e "/etc/koha/sites/$lib1" ] && ! getent passwd "$lib1-koha" >/dev/null ||
    fail "instance $lib1 or user $lib1-koha exists already"
case "$koha_mariadb_circulation" in
yes | no) ;;
*) fail "KOHA_MARIADB_CIRCULATION is yes or no, not '$koha_mariadb_circulation'" ;;
esac
[ -z "$(server_pids)" ] || fail "a koha-gateway server is already running"
trap cleanup EXIT
started=$(date +%s)

step "Koha's own SIP commands: a stand-in koha-common package"
# Only Koha's four SIP commands, so that the diversions are tested against
# files another package owns (the real koha-common needs Koha's whole stack).
kc_dir=$(mktemp -d)
mkdir -p "$kc_dir/root/DEBIAN" "$kc_dir/root/usr/sbin"
for cmd in koha-sip koha-enable-sip koha-start-sip koha-stop-sip; do
    printf '#!/bin/sh\necho "Koha %s"\n' "$cmd" >"$kc_dir/root/usr/sbin/$cmd"
    chmod 0755 "$kc_dir/root/usr/sbin/$cmd"
done
cat >"$kc_dir/root/DEBIAN/control" <<'EOF_CONTROL'
Package: koha-common
Version: 0.0.0-kgwtest
Architecture: all
Maintainer: koha-gateway package test <root@localhost>
Description: stand-in for Koha's koha-common, made by the koha-gateway package test
EOF_CONTROL
dpkg-deb --root-owner-group --build "$kc_dir/root" "$kc_dir/koha-common.deb" >/dev/null
dpkg -i "$kc_dir/koha-common.deb" >/dev/null
installed_koha_common=yes
[ "$(/usr/sbin/koha-sip)" = "Koha koha-sip" ] || fail "stand-in koha-common not installed"
ok "stand-in koha-common installed with /usr/sbin/koha-sip and the older commands"

step "Install $(basename -- "$deb") with its dependencies"
apt-get install -y -q --no-install-recommends "$deb"
installed || fail "koha-gateway is not installed"
ok "installed $(dpkg-query -W -f='${Version}' koha-gateway)"
for cmd in koha-sip koha-enable-sip koha-start-sip koha-stop-sip; do
    [ -x "/usr/sbin/$cmd" ] || fail "/usr/sbin/$cmd missing"
    contains "$(dpkg-divert --list "/usr/sbin/$cmd")" "by koha-gateway" ||
        fail "no diversion of Koha's /usr/sbin/$cmd"
done
for cmd in koha-sip koha-enable-sip koha-start-sip koha-stop-sip; do
    [ "$("/usr/sbin/$cmd.koha-common")" = "Koha $cmd" ] || fail "Koha's $cmd was not kept"
done
ok "koha-sip and the older commands installed; Koha's versions diverted to <command>.koha-common"
getent passwd koha-gateway >/dev/null || fail "system user koha-gateway missing"
ok "system user koha-gateway"
[ -f /etc/koha/SIPconfig.xml ] || fail "template /etc/koha/SIPconfig.xml missing"
ok "template /etc/koha/SIPconfig.xml"
contains "$(twistd3 --help)" "koha-gateway" || fail "twistd3 does not list the koha-gateway plugin"
grep -q "koha_gateway_plugin" /usr/lib/python3/dist-packages/twisted/plugins/dropin.cache ||
    fail "the twisted plugin cache does not contain koha_gateway_plugin"
ok "twistd3 lists the koha-gateway plugin (plugin cache refreshed by the trigger)"
if command -v systemd-analyze >/dev/null; then
    unit_copy=$(mktemp -d)/koha-gateway@$instance.service
    cp /lib/systemd/system/koha-gateway@.service "$unit_copy"
    verify=$(systemd-analyze verify "$unit_copy" 2>&1 || true)
    if [ -n "$(printf '%s\n' "$verify" | grep -v "Command 'man " || true)" ]; then
        printf '%s\n' "$verify" >&2
        fail "systemd-analyze verify reported problems with koha-gateway@.service"
    fi
    rm -rf -- "$(dirname "$unit_copy")"
    ok "systemd-analyze verify koha-gateway@$instance.service"
fi
man -w koha-sip koha-enable-sip koha-gateway koha-gateway-admin koha-gateway-client \
    >/dev/null 2>&1 ||
    [ ! -d /usr/share/man/man8 ] || fail "man pages missing"

step "koha-sip --enable $instance"
created_instance=yes
koha-sip --enable "$instance"
[ "$(file_mode_owner "$sipconfig")" = "600 koha-gateway" ] ||
    fail "$sipconfig is $(file_mode_owner "$sipconfig"), expected mode 600 owned by koha-gateway"
ok "$sipconfig mode 600, owned by the instance user"
[ -f "$kohaconf" ] || fail "$kohaconf was not created"
grep -q "<db_scheme>sqlite</db_scheme>" "$kohaconf" || fail "$kohaconf does not use SQLite"
[ -s "/var/lib/koha/$instance/koha-gateway.sqlite3" ] || fail "the SQLite database was not initialised"
[ -e "/var/lib/koha/$instance/sip.enabled" ] || fail "sip.enabled flag missing"
ok "SIP-only instance: koha-conf.xml, initialised SQLite database, sip.enabled"
out=$(koha-sip --enable "$instance" 2>&1) || fail "a second --enable failed"
contains "$out" "SIP already enabled for $instance" || fail "second --enable: $out"
ok "a second --enable keeps the configuration"
expect_rc 1 koha-sip --start no-such-instance
expect_rc 1 koha-sip --enable "bad/name"
ok "unknown and invalid instance names are refused"

step "Load the demo data"
runuser -u koha-gateway -- koha-gateway-admin --koha-conf "$kohaconf" load-demo
ok "koha-gateway-admin load-demo"

step "koha-sip --start $instance"
out=$(koha-sip --status "$instance") && fail "--status said running before --start"
[ "$out" = "SIP server not running for $instance" ] || fail "--status printed: $out"
ok "--status before start: exit 3, not running"
koha-sip --start "$instance" || fail "koha-sip --start $instance failed"
out=$(koha-sip --status "$instance") || fail "--status after start: $out"
[ "$out" = "SIP server running for $instance" ] || fail "--status printed: $out"
ok "--status: SIP server running for $instance"
pid=$(cat "$pidfile")
[ "$(ps -o user= -p "$pid" | tr -d ' ')" = "koha-gateway" ] ||
    fail "the server runs as $(ps -o user= -p "$pid"), not as the instance user"
ok "pid file $pidfile; the server (pid $pid) runs as koha-gateway"
out=$(koha-sip --start "$instance" 2>&1) || fail "a second --start failed: $out"
[[ "$out" == *"already running"* ]] || fail "a second --start printed: $out"
sip_probe "after --start"
/usr/bin/python3 "$here/sip2_probe.py" --sip-config "$sipconfig" --patron "$patron" --telnet \
    --timeout 15 || fail "telnet login and patron information"
ok "telnet localhost 8023: login, password, Login OK, 63 -> 64"
mapfile -t account < <(/usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1])
import sip2_probe
print(*sip2_probe.read_sipconfig(sys.argv[2])[:4], sep="\n")' "$here" "$sipconfig")
out=$(koha-gateway-client --port "${account[0]}" --login "${account[1]}" \
    --password "${account[2]}" --institution "${account[3]}" \
    patron-info --patron "$patron" --summary hold 2>&1) ||
    fail "koha-gateway-client patron-info: $out"
contains "$out" "64 PatronInformationResponse" || fail "koha-gateway-client printed: $out"
ok "koha-gateway-client: 93 -> 941, patron-info -> 64, decoded"
for f in sip.log sip-error.log sip-output.log; do
    [ -f "$logdir/$f" ] || fail "$logdir/$f missing"
done
[ -s "$logdir/sip.log" ] || fail "$logdir/sip.log is empty after a SIP2 session"
password=$(/usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import sip2_probe
print(sip2_probe.read_sipconfig(sys.argv[2])[2])' "$here" "$sipconfig")
if [ -n "$password" ] && grep -qF -- "CO$password" "$logdir"/*.log; then
    fail "a log file contains the SIP account password"
fi
ok "logs in $logdir: sip.log, sip-error.log, sip-output.log; no password in them"

if command -v logrotate >/dev/null; then
    step "logrotate"
    state=$(mktemp)
    logrotate --force --state "$state" /etc/logrotate.d/00-koha-gateway || fail "logrotate failed"
    rm -f -- "$state"
    [ -s "$logdir/sip.log.1" ] || fail "logrotate did not rotate sip.log"
    [ ! -s "$logdir/sip.log" ] || fail "sip.log was not truncated"
    sip_probe "after logrotate"
    [ -s "$logdir/sip.log" ] || fail "the server stopped writing sip.log after the rotation"
    ok "logrotate copies and truncates; the server keeps writing sip.log"
fi

step "koha-sip --reload / --restart"
koha-sip --reload "$instance" || fail "--reload failed"
sleep 1
kill -0 "$pid" 2>/dev/null || fail "the server died on SIGHUP"
[ "$(cat "$pidfile")" = "$pid" ] || fail "--reload replaced the process"
sip_probe "after --reload"
koha-sip --restart "$instance" || fail "--restart failed"
newpid=$(cat "$pidfile")
[ "$newpid" != "$pid" ] || fail "--restart kept pid $pid"
kill -0 "$pid" 2>/dev/null && fail "the old server $pid still runs after --restart"
sip_probe "after --restart"

step "A SIP-only instance $old_instance with a database of release 0.1.0 (schema version 2)"
created_old_instance=yes
koha-sip --quiet --enable "$old_instance"
old_db=/var/lib/koha/$old_instance/koha-gateway.sqlite3
old_sip=/etc/koha/sites/$old_instance/SIPconfig.xml
rm -f -- "$old_db"
runuser -u koha-gateway -- /usr/bin/python3 -c '
import sys
from koha_gateway.db import Database, schema
db = Database.from_url("sqlite:///" + sys.argv[1])
try:
    assert db.run_blocking(schema.migrate, 2) == (0, 2)
finally:
    db.close()
' "$old_db" || fail "could not make a schema version 2 database for $old_instance"
[ "$(schema_version "$old_db")" = 2 ] || fail "$old_db is not at schema version 2"
sed -i -e 's|127.0.0.1:6001/tcp|127.0.0.1:6004/tcp|' -e 's|127.0.0.1:8023/tcp|127.0.0.1:8026/tcp|' "$old_sip"
expect_rc 1 koha-sip --start "$old_instance"
ok "$old_instance: the server refuses to start on schema version 2"

step "Reinstall (the upgrade path): databases upgraded, the running server restarted on the new code"
pid=$(cat "$pidfile")
dpkg -i "$deb"
koha-sip --status "$instance" >/dev/null || fail "the server is not running after the upgrade"
newpid=$(cat "$pidfile")
[ "$newpid" != "$pid" ] || fail "the upgrade did not restart the server"
[ ! -e /run/koha-gateway/upgrade-restart ] || fail "upgrade restart list left behind"
sip_probe "after the upgrade"
latest=$(/usr/bin/python3 -c 'from koha_gateway.db import schema; print(schema.LATEST)')
[ "$(schema_version "$old_db")" = "$latest" ] ||
    fail "the upgrade left $old_db at schema version $(schema_version "$old_db"), not $latest"
[ "$(stat -c %U -- "$old_db")" = "koha-gateway" ] || fail "$old_db is no longer owned by koha-gateway"
koha-sip --start "$old_instance" || fail "koha-sip --start $old_instance after the upgrade"
koha-sip --stop "$old_instance" || fail "koha-sip --stop $old_instance"
ok "$old_instance: schema upgraded 2 -> $latest by the package, as koha-gateway; the server starts"

cap_eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
if [ $(((0x$cap_eff >> 10) & 1)) -eq 1 ]; then
    step "A privileged port (601) through CAP_NET_BIND_SERVICE, not root"
    cp -p -- "$sipconfig" "$sipconfig.test-orig"
    sed -i 's|127.0.0.1:6001/tcp|127.0.0.1:601/tcp|' "$sipconfig"
    koha-sip --restart "$instance" || fail "--restart with port 601"
    [ "$(ps -o user= -p "$(cat "$pidfile")" | tr -d ' ')" = "koha-gateway" ] ||
        fail "the server on port 601 does not run as koha-gateway"
    grep -q "^CapEff:[[:space:]]*0000000000000400$" "/proc/$(cat "$pidfile")/status" ||
        fail "the server has other capabilities than CAP_NET_BIND_SERVICE"
    sip_probe "port 601"
    mv -f -- "$sipconfig.test-orig" "$sipconfig"
    koha-sip --restart "$instance" || fail "--restart back on port 6001"
    ok "port 601 served by the koha-gateway user with CAP_NET_BIND_SERVICE only"
fi

step "koha-sip --stop $instance"
koha-sip --stop "$instance" || fail "--stop failed"
expect_rc 3 koha-sip --status "$instance"
[ ! -e "$pidfile" ] || fail "$pidfile left after --stop"
[ -z "$(server_pids)" ] || fail "a server still runs after --stop: $(server_pids)"
ok "--stop: not running, pid file removed"
out=$(koha-sip --stop "$instance" 2>&1) || fail "a second --stop failed: $out"
[[ "$out" == *"not running"* ]] || fail "a second --stop printed: $out"
ok "a second --stop reports: not running"

step "The older commands: koha-start-sip, koha-stop-sip"
out=$(koha-start-sip "$instance" 2>&1) || fail "koha-start-sip failed: $out"
[[ "$out" == *"Deprecated script used"* ]] || fail "koha-start-sip printed: $out"
koha-sip --status "$instance" >/dev/null || fail "koha-start-sip did not start the server"
koha-stop-sip "$instance"
expect_rc 3 koha-sip --status "$instance"
ok "koha-start-sip / koha-stop-sip"
koha-sip --disable "$instance"
expect_rc 1 koha-sip --start "$instance"
koha-enable-sip "$instance"
ok "--disable refuses --start; koha-enable-sip enables again"
koha-sip --start "$instance"
sip_probe "before purge"

step "A Koha instance: the server runs as its <instance>-koha user"
# What koha-create leaves behind, reduced to what the SIP server reads: the
# instance user, /etc/koha/sites/<i>/koha-conf.xml (here on SQLite, a database of
# the gateway's own; lib1 below is on Koha's MariaDB) and /var/lib/koha/<i>/.
created_koha_instance=yes
kuser="$koha_instance-koha"
adduser --system --group --quiet --no-create-home --home "/var/lib/koha/$koha_instance" "$kuser"
install -d -m 0755 "/etc/koha/sites/$koha_instance"
install -d -m 0755 -o "$kuser" -g "$kuser" "/var/lib/koha/$koha_instance" "/var/log/koha/$koha_instance"
kconf="/etc/koha/sites/$koha_instance/koha-conf.xml"
printf '<yazgfs><config><db_scheme>sqlite</db_scheme><database>%s</database></config></yazgfs>\n' \
    "/var/lib/koha/$koha_instance/ils.sqlite3" >"$kconf"
chown "root:$kuser" "$kconf"
chmod 0640 "$kconf"
runuser -u "$kuser" -- koha-gateway-admin --koha-conf "$kconf" load-demo
koha-sip --enable "$koha_instance"
ksip="/etc/koha/sites/$koha_instance/SIPconfig.xml"
[ "$(file_mode_owner "$ksip")" = "600 $kuser" ] ||
    fail "$ksip is $(file_mode_owner "$ksip"), expected mode 600 owned by $kuser"
[ ! -e "/var/lib/koha/$koha_instance/koha-gateway.sqlite3" ] ||
    fail "--enable created a SIP-only database in a Koha instance"
# Other ports than the demo instance, which keeps running.
sed -i -e 's|127.0.0.1:6001/tcp|127.0.0.1:6002/tcp|' -e 's|127.0.0.1:8023/tcp|127.0.0.1:8024/tcp|' "$ksip"
koha-sip --start "$koha_instance" || fail "koha-sip --start $koha_instance"
kpid=$(cat "/var/run/koha/$koha_instance/$koha_instance-koha-sip.pid")
[ "$(ps -o user= -p "$kpid" | tr -d ' ')" = "$kuser" ] ||
    fail "the server of $koha_instance runs as $(ps -o user= -p "$kpid"), not $kuser"
[ "$(stat -c %U "/var/log/koha/$koha_instance/sip.log")" = "$kuser" ] ||
    fail "sip.log of $koha_instance is not owned by $kuser"
/usr/bin/python3 "$here/sip2_probe.py" --sip-config "$ksip" --patron "$patron" --timeout 15 ||
    fail "SIP2 on the $koha_instance instance"
koha-sip --status "$instance" "$koha_instance" >/dev/null || fail "--status of two instances"
ok "$koha_instance: SIPconfig.xml and logs owned by $kuser, the server runs as $kuser, SIP2 works"

step "A Koha instance on MariaDB with Koha's own schema ($lib1, as koha-create makes it)"
created_lib1=yes
luser="$lib1-koha"
adduser --system --group --quiet --no-create-home --home "/var/lib/koha/$lib1" "$luser"
install -d -m 0755 "/etc/koha/sites/$lib1"
install -d -m 0755 -o "$luser" -g "$luser" "/var/lib/koha/$lib1" "/var/log/koha/$lib1"
mdb_dir=$(mktemp -d /var/tmp/kgw-koha-mariadb.XXXXXX)
chmod 0755 "$mdb_dir"
dbpass=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
hostport=$("$here/koha-mariadb.sh" start "$mdb_dir/data" "koha_$lib1" "koha_$lib1" "$dbpass") ||
    fail "could not start MariaDB with Koha's schema (koha-mariadb.sh)"
dbhost=${hostport% *}
dbport=${hostport#* }
lconf="/etc/koha/sites/$lib1/koha-conf.xml"
# The <config> section of Koha's debian/templates/koha-conf-site.xml.in as
# koha-create fills it in (its other sections are Zebra's).
cat >"$lconf" <<EOF_KOHA_CONF
<yazgfs>
<listen id="biblioserver">unix:/var/run/koha/$lib1/bibliosocket</listen>
<server id="biblioserver" listenref="biblioserver">
    <directory>/var/lib/koha/$lib1/biblios</directory>
    <config>/etc/koha/sites/$lib1/koha-DEBIAN-biblios.cfg</config>
</server>
<config>
 <db_scheme>mysql</db_scheme>
 <database>koha_$lib1</database>
 <hostname>$dbhost</hostname>
 <port>$dbport</port>
 <user>koha_$lib1</user>
 <pass>$dbpass</pass>
 <biblioserver>biblios</biblioserver>
 <biblioservershadow>1</biblioservershadow>
 <authorityserver>authorities</authorityserver>
 <authorityservershadow>1</authorityservershadow>
 <intranetdir>/usr/share/koha/intranet/cgi-bin</intranetdir>
 <logdir>/var/log/koha/$lib1</logdir>
 <useldapserver>0</useldapserver><!-- see C4::Auth_with_ldap for extra configs you must add if you want to turn this on -->
 <useshibboleth>0</useshibboleth>
 <memcached_servers>127.0.0.1:11211</memcached_servers>
 <memcached_namespace>koha_$lib1</memcached_namespace>
 <timezone></timezone>
</config>
</yazgfs>
EOF_KOHA_CONF
chown "root:$luser" "$lconf"
chmod 0640 "$lconf"
ok "MariaDB with Koha's schema at $dbhost:$dbport; $lconf with db_scheme mysql"
version=$(runuser -u "$luser" -- /usr/bin/python3 -c '
import sys
from koha_gateway.config.kohaconf import load_koha_conf
from koha_gateway.db import Database
db = Database.from_url(load_koha_conf(sys.argv[1]).database_url)
try:
    print(db.run_blocking(lambda txn: txn.scalar(
        "SELECT value FROM systempreferences WHERE variable = ?", ("Version",))))
finally:
    db.close()
' "$lconf") || fail "the installed package could not read Koha's database through $lconf"
[ "$version" = "23.0600007" ] || fail "Koha's Version preference read as '$version'"
ok "the installed package reads Koha's database (Version $version) as $luser through koha-conf.xml"
out=$(koha-sip --enable "$lib1" 2>&1) || fail "koha-sip --enable $lib1: $out"
contains "$out" "only the gateway's kgw_ tables are created or upgraded" ||
    fail "koha-sip --enable $lib1 did not create the gateway's tables in Koha's database: $out"
lsip="/etc/koha/sites/$lib1/SIPconfig.xml"
[ "$(file_mode_owner "$lsip")" = "600 $luser" ] ||
    fail "$lsip is $(file_mode_owner "$lsip"), expected mode 600 owned by $luser"
[ ! -e "/var/lib/koha/$lib1/koha-gateway.sqlite3" ] ||
    fail "--enable created a SIP-only database in a Koha instance"
sed -i -e 's|127.0.0.1:6001/tcp|127.0.0.1:6003/tcp|' -e 's|127.0.0.1:8023/tcp|127.0.0.1:8025/tcp|' "$lsip"
[ "$(kgw_tables "$lconf")" != "" ] || fail "no kgw_ table in $lib1's database after --enable"
out=$(runuser -u "$luser" -- koha-gateway-admin --koha-conf "$lconf" init) ||
    fail "koha-gateway-admin init on Koha's database"
contains "$out" "schema is up to date" || fail "init after --enable did not find a current schema: $out"
ok "koha-sip --enable $lib1: SIPconfig.xml owned by $luser, the kgw_ tables in Koha's database, no SQLite database"
if [ "$koha_mariadb_circulation" = yes ]; then
    runuser -u "$luser" -- koha-gateway-admin --koha-conf "$lconf" load-demo ||
        fail "koha-gateway-admin load-demo on Koha's database"
    ok "koha-gateway-admin load-demo on Koha's database"
    koha-sip --start "$lib1" || fail "koha-sip --start $lib1"
    lpid=$(cat "/var/run/koha/$lib1/$lib1-koha-sip.pid")
    [ "$(ps -o user= -p "$lpid" | tr -d ' ')" = "$luser" ] ||
        fail "the server of $lib1 runs as $(ps -o user= -p "$lpid"), not $luser"
    /usr/bin/python3 "$here/sip2_probe.py" --sip-config "$lsip" --patron "$patron" \
        --checkout 39999000000001 --timeout 15 || fail "SIP2 circulation on Koha's database"
    loans=$(runuser -u "$luser" -- /usr/bin/python3 -c '
import sys
from koha_gateway.config.kohaconf import load_koha_conf
from koha_gateway.db import Database
db = Database.from_url(load_koha_conf(sys.argv[1]).database_url)
try:
    print(*db.run_blocking(lambda txn: txn.one(
        "SELECT (SELECT COUNT(*) FROM issues WHERE itemnumber = i.itemnumber) AS open_loans, "
        "(SELECT COUNT(*) FROM old_issues WHERE itemnumber = i.itemnumber) AS returned, "
        "i.onloan FROM items i WHERE i.barcode = ?", ("39999000000001",)).values()))
finally:
    db.close()
' "$lconf") || fail "could not read the loan back from Koha's tables"
    [ "$loans" = "0 1 None" ] ||
        fail "Koha's tables after checkout and checkin: issues, old_issues, onloan = $loans"
    ok "$lib1: login, patron information, checkout and checkin; the loan is in old_issues"

    step "Reinstall with $lib1's kgw_ tables missing (an upgrade that adds some): postinst creates them"
    runuser -u "$luser" -- /usr/bin/python3 -c '
import sys
from koha_gateway.config.kohaconf import load_koha_conf
from koha_gateway.db import Database
db = Database.from_url(load_koha_conf(sys.argv[1]).database_url)
def drop(txn):
    txn.execute("SET FOREIGN_KEY_CHECKS = 0")
    for table in sys.argv[2:]:
        txn.execute(f"DROP TABLE {table}")
    txn.execute("SET FOREIGN_KEY_CHECKS = 1")
try:
    db.run_blocking(drop)
finally:
    db.close()
' "$lconf" $(kgw_tables "$lconf") || fail "could not drop the kgw_ tables of $lib1"
    [ "$(kgw_tables "$lconf")" = "" ] || fail "kgw_ tables left in $lib1's database"
    out=$(dpkg -i "$deb" 2>&1) || fail "reinstall: $out"
    contains "$out" "koha-gateway: $lib1: Koha database" && contains "$out" "schema upgraded: version 0 ->" ||
        fail "postinst did not upgrade $lib1's database: $out"
    koha-sip --status "$lib1" >/dev/null || fail "the server of $lib1 is not running after the upgrade"
    /usr/bin/python3 "$here/sip2_probe.py" --sip-config "$lsip" --patron "$patron" --timeout 15 ||
        fail "SIP2 on $lib1 after the upgrade"
    koha_version=$(runuser -u "$luser" -- koha-gateway-admin --koha-conf "$lconf" init) ||
        fail "init after the upgrade"
    contains "$koha_version" "schema is up to date" || fail "the schema of $lib1 is not current: $koha_version"
    ok "$lib1: the package's postinst created the kgw_ tables again (as $luser), the server restarted and answers"
    koha-sip --stop "$lib1" || fail "koha-sip --stop $lib1"
else
    ok "$lib1: SIP2 circulation on Koha's database not run (KOHA_MARIADB_CIRCULATION=no)"
fi

step "Purge the package with the servers running"
apt-get purge -y -q koha-gateway
installed && fail "koha-gateway is still installed"
sleep 1
[ -z "$(server_pids)" ] || fail "a server still runs after the purge: $(server_pids)"
[ ! -e "$pidfile" ] || fail "$pidfile left after the purge"
[ ! -e "/var/run/koha/$koha_instance/$koha_instance-koha-sip.pid" ] ||
    fail "the pid file of $koha_instance was left after the purge"
ok "nothing left running"
if contains "$(dpkg-divert --list)" "by koha-gateway"; then
    fail "diversions left: $(dpkg-divert --list | grep 'by koha-gateway')"
fi
for path in /usr/share/koha-gateway /lib/systemd/system/koha-gateway@.service \
    /etc/logrotate.d/00-koha-gateway /etc/koha/SIPconfig.xml; do
    [ ! -e "$path" ] || fail "$path left after the purge"
done
if grep -qs "koha_gateway_plugin" /usr/lib/python3/dist-packages/twisted/plugins/dropin.cache; then
    fail "the plugin cache still names koha_gateway_plugin"
fi
for cmd in koha-sip koha-enable-sip koha-start-sip koha-stop-sip; do
    [ "$("/usr/sbin/$cmd")" = "Koha $cmd" ] || fail "Koha's /usr/sbin/$cmd was not given back"
    [ ! -e "/usr/sbin/$cmd.koha-common" ] || fail "/usr/sbin/$cmd.koha-common left"
done
ok "files, template, diversions and plugin cache entry removed; Koha's commands given back"
[ -f "$sipconfig" ] || fail "the purge deleted the instance configuration"
ok "instance configuration and data kept (the library's data)"

printf '\nPASS: %d checks in %d s\n' "$checks" "$(($(date +%s) - started))"
