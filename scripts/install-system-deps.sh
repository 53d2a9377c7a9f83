#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to for real: PostgreSQL server binaries,
# Redis, Debian's chromium + chromedriver, Node.js/npm (independent protocol
# peers), xmlsec1 (independent SAML signature/encryption checks), OpenLDAP's slapd +
# ldap-utils (the tests start their own slapd from a generated config; the system slapd is never configured or started). Idempotent: installs only what
# is missing. Needs root and apt-get; anywhere else it says what is missing and stops,
# because the tests fail (never skip) without these services.
set -euo pipefail

missing=()
need() { # need <command-or-path> <debian-package>
  if ! command -v "$1" >/dev/null 2>&1 && ! compgen -G "$1" >/dev/null; then missing+=("$2"); fi
}
need '/usr/lib/postgresql/*/bin/initdb' postgresql
need redis-server redis-server
need chromium chromium
need chromedriver chromium-driver
need node nodejs
need npm npm
need wrk wrk
need /usr/sbin/slapd slapd
need ldapsearch ldap-utils
need xmlsec1 xmlsec1  # independent XML-DSig/XML-Enc checker (tests/unit/posture_gateway/saml)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: need root and apt-get to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# slapd's maintainer script must not build a system directory: answer its debconf first.
if printf '%s\n' "${missing[@]}" | grep -qx slapd && command -v debconf-set-selections >/dev/null; then
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system-deps: done"
