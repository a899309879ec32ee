#!/usr/bin/env bash
# deploy/debian/{postinst,prerm,postrm} run by /bin/sh against stubs of every tool they call,
# which log their arguments (ctest "deploy: maintainer scripts ...", label deploy): first install,
# upgrade with a unit the operator disabled, no systemd running, no systemd tools, remove, purge.
# The calls must be debhelper's (dh_installsystemd, compat 13) for both units. A real install
# needs systemd as PID 1, which a build container lacks; the package's lintian run is in
# scripts/check-deploy.
# Usage: tests/deploy/maintainer_scripts_test.sh SOURCE_DIR
set -euo pipefail
src=$1
tmp=$(mktemp -d /tmp/docpipe-maintscripts.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# Stubs: each logs "NAME ARGS"; deb-systemd-helper's was-enabled answers from $WAS_ENABLED,
# getent finds no user.
mkdir -p "$tmp/bin" "$tmp/systemd-running"
for tool in systemd-sysusers systemd-tmpfiles deb-systemd-helper deb-systemd-invoke systemctl \
  getent useradd install; do
  cat >"$tmp/bin/$tool" <<STUB
#!/bin/sh
echo "$tool \$*" >>"$tmp/calls"
if [ "$tool" = deb-systemd-helper ] && [ "\$1 \$2" = "--quiet was-enabled" ]; then
  case " \$WAS_ENABLED " in *" \$3 "*) exit 0 ;; *) exit 1 ;; esac
fi
[ "$tool" != getent ]
STUB
  chmod +x "$tmp/bin/$tool"
done

# run SCRIPT SYSTEMD(yes|no) TOOLS(all|no-systemd-tools) ARGS...: the calls it made, one a line.
run() {
  local script=$1 systemd=$2 tools=$3
  shift 3
  local path=$tmp/bin
  if [ "$tools" = no-systemd-tools ]; then
    mkdir -p "$tmp/bin-min"
    for tool in deb-systemd-helper deb-systemd-invoke systemctl getent useradd install; do
      ln -sf "$tmp/bin/$tool" "$tmp/bin-min/$tool"
    done
    path=$tmp/bin-min
  fi
  local run_dir=/nonexistent/run/systemd/system
  [ "$systemd" = yes ] && run_dir=$tmp/systemd-running
  # The only change to the script: where it looks for a running systemd.
  sed "s|/run/systemd/system|$run_dir|g" "$src/deploy/debian/$script" >"$tmp/$script"
  : >"$tmp/calls"
  local status=0
  PATH=$path /bin/sh -e "$tmp/$script" "$@" || status=$?
  cat "$tmp/calls"
  # In the output, which every caller compares: run is called in a subshell.
  [ "$status" -eq 0 ] || echo "$script $* exited $status"
}
expect_calls() {  # NAME EXPECTED ACTUAL
  [ "$2" = "$3" ] || fail "$1: calls"$'\n'"$3"$'\n'"expected"$'\n'"$2"
}

both="docpipe.service docpipe-metrics.socket"
setup="systemd-sysusers docpipe.conf
systemd-tmpfiles --create docpipe.conf"

WAS_ENABLED=$both expect_calls "first install" "$setup
deb-systemd-helper unmask docpipe.service
deb-systemd-helper --quiet was-enabled docpipe.service
deb-systemd-helper enable docpipe.service
deb-systemd-helper unmask docpipe-metrics.socket
deb-systemd-helper --quiet was-enabled docpipe-metrics.socket
deb-systemd-helper enable docpipe-metrics.socket
systemctl --system daemon-reload
deb-systemd-invoke start $both" "$(WAS_ENABLED=$both run postinst yes all configure)"

expect_calls "upgrade, service disabled by the operator" "$setup
deb-systemd-helper unmask docpipe.service
deb-systemd-helper --quiet was-enabled docpipe.service
deb-systemd-helper update-state docpipe.service
deb-systemd-helper unmask docpipe-metrics.socket
deb-systemd-helper --quiet was-enabled docpipe-metrics.socket
deb-systemd-helper enable docpipe-metrics.socket
systemctl --system daemon-reload
deb-systemd-invoke try-restart $both" \
  "$(WAS_ENABLED=docpipe-metrics.socket run postinst yes all configure 0.0.9)"

calls=$(WAS_ENABLED=$both run postinst no all configure)
grep -q '^deb-systemd-helper enable docpipe.service$' <<<"$calls" ||
  fail "first install without systemd running does not enable the service: $calls"
grep -Eq '^(systemctl|deb-systemd-invoke) ' <<<"$calls" &&
  fail "first install without systemd running starts or reloads something: $calls"

calls=$(WAS_ENABLED=$both run postinst no no-systemd-tools configure)
grep -q '^useradd --system --user-group .* docpipe$' <<<"$calls" ||
  fail "without systemd-sysusers the user is not created with useradd: $calls"
grep -q '^install -d -o docpipe -g docpipe -m 1730 /var/lib/docpipe/spool/incoming$' <<<"$calls" ||
  fail "without systemd-tmpfiles the spool is not created with install -d: $calls"

expect_calls "prerm remove" "deb-systemd-invoke stop docpipe-metrics.socket docpipe.service" \
  "$(run prerm yes all remove)"
expect_calls "prerm upgrade" "" "$(run prerm yes all upgrade 0.1.1)"
expect_calls "postrm remove" "systemctl --system daemon-reload" "$(run postrm yes all remove)"
expect_calls "postrm purge" "deb-systemd-helper purge $both" "$(run postrm yes all purge)"
for script in postinst prerm postrm; do
  grep -Eq '^[^#]*\brm\b.*/var/lib/docpipe' "$src/deploy/debian/$script" &&
    fail "$script removes /var/lib/docpipe (the operator's jobs and reports)"
done

if ((failures)); then
  echo "$failures problem(s) in the maintainer scripts" >&2
  exit 1
fi
echo "maintainer scripts: install, upgrade, no systemd, remove and purge call what debhelper's do"
