# The garrison package: `pkgs.callPackage ./nix/package.nix { }`.
{
  lib,
  rustPlatform,
  rustc,
  nix,
  procps,
}:
let
  cargoToml = lib.importTOML ../Cargo.toml;
  msrv = cargoToml.package.rust-version;
  fs = lib.fileset;
  sandboxTests = [
    "blocklists"
    "capi"
    "config_diagnostics"
    "config_examples"
    "config_robustness"
    "daemon_acquisition"
    "engine_reload"
    "lapi_api"
    "nix_module"
    "rule_samples"
  ];
in
# Cargo would refuse an older compiler anyway ("package requires rustc 1.95"); fail during
# evaluation instead, with the remedy.
assert lib.assertMsg (lib.versionAtLeast rustc.version msrv) ''
  garrison needs rustc >= ${msrv} (Cargo.toml rust-version), but this nixpkgs has rustc
  ${rustc.version}: update the flake's nixpkgs input (`nix flake update nixpkgs`).
'';
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # Only what the build and its tests read (tests/nix_module.rs checks the README's
  # NixOS example against the module).
  # maybeMissing: build.rs and some directories appear with the daemon and the rules.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions (
      map fs.maybeMissing [
        ../Cargo.toml
        ../Cargo.lock
        ../README.md
        ../build.rs
        ../src
        ../rules
        ../schemas
        ../examples
        ../benches
        ../tests
        # tests/nix_module.rs parses every .nix file and evaluates nix/render.nix.
        ../flake.nix
        ../modules
        ../nix
        ../nixos-tests
      ]
    );
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The tests that can run in the build sandbox. The others never skip, by design, and
  # need what a sandbox lacks: root and network namespaces (e2e_netns, enforce_kernel,
  # firewall_bouncer), Debian's crowdsec and pycrowdsec (lapi_interop), or the corpora in
  # ../shared, outside this repository (hub_parity, fail2ban_corpus, and some of the
  # library's unit tests). CI runs all of them (tests/run.sh).
  cargoTestFlags = [
    "--bins"
  ]
  ++ lib.concatMap (t: [
    "--test"
    t
  ]) sandboxTests;

  # tests/nix_module.rs runs nix-instantiate (--parse and --eval only, nothing is built);
  # capi and daemon_acquisition signal the daemon with `kill`.
  nativeCheckInputs = [
    nix
    procps
  ];
  preCheck = ''
    # A private, empty store and state for nix-instantiate inside the build sandbox.
    export NIX_TEST_ROOT="$TMPDIR/nix-test"
    export NIX_CONF_DIR="$NIX_TEST_ROOT/etc"
    export NIX_LOCALSTATE_DIR="$NIX_TEST_ROOT/var"
    export NIX_LOG_DIR="$NIX_TEST_ROOT/var/log/nix"
    export NIX_STATE_DIR="$NIX_TEST_ROOT/var/nix"
    export NIX_STORE_DIR="$NIX_TEST_ROOT/store"
    export NIX_BUILD_HOOK=
    export HOME="$NIX_TEST_ROOT/home"
    mkdir -p "$NIX_CONF_DIR" "$HOME"
    nix-store --init
  '';

  postInstall = ''
    install -Dm644 -t "$out/share/garrison/schemas" schemas/garrison.schema.json
    mkdir -p "$out/share/garrison"
    cp -r rules "$out/share/garrison/rules"
    cp -r examples "$out/share/garrison/examples"
  '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    mainProgram = "garrison";
    platforms = lib.platforms.linux;
  };
}
