# garrison's NixOS VM tests, as flake checks: `nix build .#checks.x86_64-linux.vm-ssh`.
# Interactive: `nix run .#checks.x86_64-linux.vm-ssh.driverInteractive`.
{ pkgs, self }:
let
  runTest = file: pkgs.testers.runNixOSTest (import file { inherit self; });
in
{
  vm-ssh = runTest ./ssh.nix;
  vm-nginx = runTest ./nginx.nix;
  vm-ipv6 = runTest ./ipv6.nix;
  vm-bouncer = runTest ./bouncer.nix;
  vm-nftables-reload = runTest ./nftables-reload.nix;
}
