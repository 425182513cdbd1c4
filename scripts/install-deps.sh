#!/usr/bin/env bash
# install-deps.sh: install what building and testing migration_runner needs on
# Debian 12 with PostgreSQL 15 (run as root).
#
#   sudo bash scripts/install-deps.sh
#
# Installs only the packages that are missing (checked with dpkg-query), runs
# `apt-get update` once and only when something is missing, and prints
# nothing when everything is already there.  PG_MAJOR (default 15) selects
# the PostgreSQL major version.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
packages=(
	build-essential                        # gcc, make (server-dev has neither)
	"postgresql-$PG_MAJOR"                 # the server itself
	"postgresql-server-dev-$PG_MAJOR"      # headers, pgxs, pg_regress
	"postgresql-$PG_MAJOR-pgtap"           # pgTAP extension
	libtap-parser-sourcehandler-pgtap-perl # pg_prove
	libipc-run-perl                        # PostgreSQL::Test::Cluster
)

# true when the package is installed (not merely known or half-removed)
installed() {
	local state
	state=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) || return 1
	[[ $state == ii* ]]
}

missing=()
for pkg in "${packages[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
	echo "install-deps.sh: missing packages: ${missing[*]}" >&2
	echo "install-deps.sh: run as root: sudo bash scripts/install-deps.sh" >&2
	exit 1
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
for pkg in "${missing[@]}"; do
	installed "$pkg" || { echo "install-deps.sh: $pkg did not install" >&2; exit 1; }
done
echo "install-deps.sh: done"
