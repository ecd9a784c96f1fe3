#!/usr/bin/env bash
# garrison's test suite: the one command CI runs (through .ci/run) and developers run locally.
# It installs what it needs on a fresh Debian 12 machine, then checks formatting, lints,
# and runs every test. Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nix-instantiate >/dev/null || need_apt+=(nix-bin)
# Local API interop tests: Debian's crowdsec (cscli 1.4.6) and pycrowdsec from PyPI in a venv.
command -v cscli >/dev/null || need_apt+=(crowdsec)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# tests/enforce_kernel.rs: nftables in network namespaces (root)
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "==> installing Debian packages: ${need_apt[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "missing Debian packages: ${need_apt[*]} (run as root to install them)" >&2
        exit 1
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
