#!/usr/bin/env bash
# garrison's test suite: the one command CI runs (through .ci/run) and developers run locally.
# It installs what it needs on a fresh Debian 12 machine, then checks formatting, lints,
# and runs every test. Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
need() { command -v "$1" >/dev/null || need_apt+=("$2"); }
need nix-instantiate nix-bin
# tests/enforce_kernel.rs, tests/e2e_netns.rs: nftables in network namespaces (root)
need nft nftables
need ip iproute2
# tests/e2e_netns.rs: real nginx and sshd attacked from another namespace
need nginx nginx-light
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
need ssh-keygen openssh-client
need sshpass sshpass
need curl curl
need nc netcat-openbsd
# Local API interop tests: Debian's crowdsec (cscli 1.4.6) and pycrowdsec from PyPI in a venv.
need python3 python3
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
need_crowdsec=
command -v cscli >/dev/null || need_crowdsec=1
# tests/firewall_bouncer.rs: Debian's crowdsec-firewall-bouncer (0.0.25) and python3's http.server.
need_fwb=
[ -x /usr/bin/crowdsec-firewall-bouncer ] || need_fwb=1
if [ "${#need_apt[@]}" -gt 0 ] || [ -n "$need_crowdsec" ] || [ -n "$need_fwb" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${need_apt[*]} ${need_crowdsec:+crowdsec} ${need_fwb:+crowdsec-firewall-bouncer} (run as root to install them)" >&2
        exit 1
    fi
    echo "==> installing Debian packages: ${need_apt[*]} ${need_crowdsec:+crowdsec} ${need_fwb:+crowdsec-firewall-bouncer}"
    # Services are installed, not started, on this machine: the tests run their own nginx
    # and sshd inside network namespaces.
    policy_added=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    apt-get update -qq
    if [ "${#need_apt[@]}" -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    fi
    if [ -n "$need_crowdsec" ]; then
        # Debian's crowdsec registers with CrowdSec's Central API in its postinst unless the
        # credentials file exists and is not empty; CI has no route there. Its binaries are
        # all the tests need, so a failing postinst is tolerated and cscli checked instead.
        mkdir -p /etc/crowdsec
        [ -s /etc/crowdsec/online_api_credentials.yaml ] ||
            echo "# garrison CI: no Central API registration" >/etc/crowdsec/online_api_credentials.yaml
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold crowdsec >/dev/null ||
            echo "(crowdsec's postinst failed; its binaries are installed)"
        command -v cscli >/dev/null || { echo "cscli is missing after installing crowdsec" >&2; exit 1; }
    fi
    if [ -n "$need_fwb" ]; then
        # Its postinst registers the bouncer with `cscli bouncers add` (which needs a working
        # local crowdsec database) unless the override file exists; the test writes its own
        # configuration, so an override that sets nothing skips that. policy-rc.d (above)
        # keeps the service from starting.
        mkdir -p /etc/crowdsec/bouncers
        [ -e /etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml.local ] ||
            echo "# garrison CI: tests/firewall_bouncer.rs runs the bouncer with its own configuration" \
                >/etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml.local
        # A failing postinst (such as crowdsec's, left half-configured above) is tolerated
        # like crowdsec's: the binary is what the test runs, and it is checked.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confold crowdsec-firewall-bouncer >/dev/null ||
            echo "(a postinst failed while installing crowdsec-firewall-bouncer; checking its binary)"
        [ -x /usr/bin/crowdsec-firewall-bouncer ] || { echo "crowdsec-firewall-bouncer is missing after installing it" >&2; exit 1; }
    fi
    if [ -n "$policy_added" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
fi

if ! target/pyenv/bin/python -c 'import pycrowdsec' 2>/dev/null; then
    echo "==> pip install pycrowdsec (venv in target/pyenv)"
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install -q pycrowdsec
fi
export GARRISON_PYTHON="$PWD/target/pyenv/bin/python"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> nix files parse"
find . -name '*.nix' -not -path './target/*' -print0 | while IFS= read -r -d '' f; do
    nix-instantiate --parse "$f" >/dev/null
done

echo "==> cargo test"
# Benches (cargo bench) print figures; they are built by clippy above but not run here.
cargo test --locked --lib --bins --tests 2>&1 | tee target/test-output.txt

# One closing line for the whole suite.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i - 1); if ($(i) ~ /^failed;?$/) f += $(i - 1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test-output.txt
