# garrison's NixOS VM tests, as flake checks (they need KVM):
#   nix build .#checks.x86_64-linux.vm-ssh -L
#   nix build .#checks.x86_64-linux.vm-ssh.driverInteractive && ./result/bin/nixos-test-driver
# The helpers they share (an SSH server protected by garrison, attack tools, Python
# functions for the scripts) are in ./common.nix.
{ pkgs, self }:
let
  runTest = file: pkgs.testers.runNixOSTest (import file { inherit self; });
in
{
  # (a) SSH brute force, innocent client, reload/restart, `garrison decisions delete`.
  vm-ssh = runTest ./ssh.nix;
  # (b) HTTP probing against nginx.
  vm-nginx = runTest ./nginx.nix;
  # (c) IPv6 attacker and whitelisted IPv6 client.
  vm-ipv6 = runTest ./ipv6.nix;
  # (d) nixpkgs' crowdsec-firewall-bouncer on a third VM enforces garrison's decisions.
  vm-bouncer = runTest ./bouncer.nix;
  # (e) bans survive `systemctl reload nftables` (and restart, and `nft flush ruleset`).
  vm-nftables-reload = runTest ./nftables-reload.nix;
}
