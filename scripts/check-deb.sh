#!/usr/bin/env bash
# Checks a package built by scripts/build-deb.sh: lintian with no error or warning left
# (each tag berth keeps is explained in packaging/deb/lintian-overrides), and
# `systemd-analyze verify` of its units against this machine's systemd units, with the
# package's own binary and man pages.
#
#   bash scripts/check-deb.sh target/debian/berth_<version>_amd64.deb
set -euo pipefail
deb=${1:?usage: check-deb.sh PACKAGE.deb}
lintian --fail-on error,warning "$deb" 2> >(grep -v '^running with root privileges' >&2)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
dpkg-deb -x "$deb" "$dir/root"
mkdir "$dir/units"
for unit in "$dir"/root/lib/systemd/system/*.service; do
  # The binary where the package would put it is the one unpacked here.
  sed "s|/usr/bin/berth|$dir/root/usr/bin/berth|" "$unit" >"$dir/units/${unit##*/}"
  page=$(sed -n 's/^Documentation=man:\(.*\)(1)$/\1/p' "$unit")
  [ -z "$page" ] || [ -e "$dir/root/usr/share/man/man1/$page.1.gz" ] ||
    { echo "check-deb: ${unit##*/} documents man:$page(1), which the package lacks" >&2; exit 1; }
done
systemd-analyze verify --man=no "$dir"/units/*.service
echo "check-deb: $deb: lintian clean, units verified"
