# (e) Bans survive the firewall: `systemctl reload nftables` and `systemctl restart
# nftables` keep the attacker out. The server flushes the whole ruleset on every reload
# (flushRuleset), the hard case: garrison's table is removed, and garrison itself (not a
# restart: its main PID stays) rebuilds it and its bans from the database.
{ self }:
let
  common = import ./common.nix;
in
{
  name = "garrison-nftables-reload";

  defaults.imports = [ self.nixosModules.default ];

  nodes = {
    server = {
      imports = [ common.sshServer ];
      networking.nftables.flushRuleset = true;
    };
    attacker = common.tools;
  };

  testScript =
    { nodes, ... }:
    ''
      ${common.python}
      ATTACKER = "${nodes.attacker.networking.primaryIPAddress}"
      SERVER = "${nodes.server.networking.primaryIPAddress}"

      start_all()
      server.wait_for_unit("nftables.service")
      server.wait_for_unit("garrison.service")
      server.wait_for_open_port(22)
      attacker.wait_for_unit("multi-user.target")

      with subtest("garrison's table exists after boot (created after the firewall's flush)"):
          server.succeed("nft list table inet garrison")
          server.succeed("nft list table inet nixos-fw")

      with subtest("the attacker is banned"):
          attacker.succeed(f"nc -w3 -z {SERVER} 22")
          brute_force(attacker, f"alice@{SERVER}")
          server.wait_until_succeeds(banned(ATTACKER), timeout=60)
          attacker.fail(f"nc -w3 -z {SERVER} 22")
          pid = server.succeed("systemctl show garrison.service -p MainPID --value").strip()

      with subtest("the ban survives systemctl reload nftables"):
          server.succeed("systemctl reload nftables.service")
          server.succeed("nft list table inet nixos-fw")
          server.wait_until_succeeds(banned(ATTACKER), timeout=30)
          attacker.fail(f"nc -w3 -z {SERVER} 22")

      with subtest("the ban survives systemctl restart nftables"):
          server.succeed("systemctl restart nftables.service")
          server.wait_until_succeeds(banned(ATTACKER), timeout=30)
          attacker.fail(f"nc -w3 -z {SERVER} 22")
          server.succeed("systemctl is-active garrison.service")
          after = server.succeed("systemctl show garrison.service -p MainPID --value").strip()
          assert after == pid, f"garrison was restarted ({pid} -> {after}); it should repair its table"
          assert_banned_by_garrison(server, ATTACKER)

      with subtest("a plain `nft flush ruleset` is repaired too"):
          server.succeed("nft flush ruleset")
          server.wait_until_succeeds(banned(ATTACKER), timeout=10)
          attacker.fail(f"nc -w3 -z {SERVER} 22")

    '';
}
