#!/usr/bin/env bash
# Installs the Debian packages that meshlet's tests use as real peers (curl, nghttp2 client,
# iproute2/iptables/nftables for interception tests, prometheus for the scrape test, chromium for
# the admin pages). Idempotent: does
# nothing when everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have nghttp || need+=(nghttp2-client)
have ip || need+=(iproute2)
have iptables || need+=(iptables)
# nft: meshlet iptables --native-nftables (interception tests).
have nft || need+=(nftables)
# setpriv runs the interception tests' sidecars as UID 1337 (util-linux, normally present).
have setpriv || need+=(util-linux)
have openssl || need+=(openssl)
{ have prometheus && have promtool; } || need+=(prometheus)
# chromium: the admin pages are tested in a real headless browser (playwright-core drives it).
have chromium || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  echo "test dependencies: all present"
  exit 0
fi
echo "test dependencies: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if have sudo; then SUDO="sudo"; else
    echo "missing packages (${need[*]}) and not root: install them with apt-get and rerun" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "test dependencies: installed ${need[*]}"
