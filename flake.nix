{
  description = "garrison: a declarative, CrowdSec-compatible intrusion-prevention daemon";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      # nftables and the journal: Linux only.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (
        system: pkgs: {
          default = pkgs.callPackage ./nix/package.nix { };
          garrison = self.packages.${system}.default;
        }
      );

      overlays.default = final: _prev: {
        garrison = final.callPackage ./nix/package.nix { };
      };

      # The module defaults its package to one built with the machine's own pkgs (so it
      # also works for systems not listed above, and with cross-compilation); no overlay is
      # needed, which matters where nixpkgs.pkgs is read-only (NixOS tests).
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./modules/garrison.nix ];
          services.garrison.package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
        };
      nixosModules.garrison = self.nixosModules.default;

      # One attribute set per system: `checks.${system}` must be defined once, not in pieces.
      checks = forAllSystems (
        system: pkgs:
        let
          garrison = self.packages.${system}.default;
          jsonFormat = pkgs.formats.json { };
          examples = import ./nix/examples.nix;

          # The module, evaluated for real for each example; building `configFile` runs
          # `garrison check` on what the module renders (no VM needed).
          moduleConfig =
            name: example:
            (lib.nixosSystem {
              modules = [
                self.nixosModules.default
                {
                  nixpkgs.hostPlatform = system;
                  boot.isContainer = true;
                  system.stateVersion = "25.11";
                  services.openssh.enable = true;
                  services.nginx.enable = example.acquisitions.nginx.enable or false;
                  services.garrison = example // {
                    enable = true;
                  };
                }
              ];
            }).config.services.garrison.configFile;
        in
        {
          package = garrison; # builds and runs `cargo test`, including tests/nix_module.rs

          config-check =
            pkgs.runCommand "garrison-config-check"
              {
                nativeBuildInputs = [ garrison ];
                examples = lib.mapAttrsToList (
                  name: e: jsonFormat.generate "render-${name}.json" (import ./nix/render.nix e)
                ) examples;
              }
              ''
                for f in ${./examples}/*.kdl ${./examples}/*.json $examples; do
                  echo "== $f"
                  garrison check --config "$f"
                done
                touch "$out"
              '';
        }
        // lib.mapAttrs' (name: e: lib.nameValuePair "module-${name}" (moduleConfig name e)) examples
        // import ./nixos-tests { inherit pkgs self; }
      );

      devShells = forAllSystems (
        system: pkgs: {
          default = pkgs.mkShell {
            inputsFrom = [ self.packages.${system}.default ];
            packages = with pkgs; [
              cargo
              clippy
              rustfmt
              rust-analyzer
              nix
              nftables
              nixfmt-tree
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree);
    };
}
