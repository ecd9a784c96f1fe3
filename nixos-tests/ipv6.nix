# (c) IPv6: a brute force over IPv6 bans the IPv6 source (set banned-ipv6, and only that
# address), and a whitelisted IPv6 client that fails just as often is never banned.
{ self }:
let
  common = import ./common.nix;
in
{
  name = "garrison-ipv6";

  defaults.imports = [ self.nixosModules.default ];

  nodes = {
    server =
      { nodes, ... }:
      {
        imports = [ common.sshServer ];
        services.garrison.whitelist = [ "${nodes.client.networking.primaryIPv6Address}/128" ];
      };
    attacker = common.tools;
    client = common.tools;
  };

  testScript =
    { nodes, ... }:
    ''
      ${common.python}
      SERVER6 = "${nodes.server.networking.primaryIPv6Address}"
      ATTACKER6 = "${nodes.attacker.networking.primaryIPv6Address}"
      ATTACKER4 = "${nodes.attacker.networking.primaryIPAddress}"
      CLIENT6 = "${nodes.client.networking.primaryIPv6Address}"

      start_all()
      server.wait_for_unit("garrison.service")
      server.wait_for_open_port(22)
      attacker.wait_for_unit("multi-user.target")
      client.wait_for_unit("multi-user.target")

      with subtest("the whitelist reaches the daemon"):
          server.succeed(f"grep -F '{CLIENT6}/128' /etc/garrison/garrison.json")

      with subtest("everyone reaches sshd over IPv6 before the attack"):
          attacker.succeed(f"nc -6 -w3 -z {SERVER6} 22")
          client.succeed(f"nc -6 -w3 -z {SERVER6} 22")

      with subtest("an IPv6 brute force is banned"):
          brute_force(attacker, f"alice@{SERVER6}")
          server.wait_until_succeeds(banned(ATTACKER6), timeout=60)
          attacker.fail(f"nc -6 -w3 -z {SERVER6} 22")
          assert_banned_by_garrison(server, ATTACKER6)

      with subtest("only that address: the attacker's IPv4 address is not banned"):
          server.fail(banned(ATTACKER4))
          attacker.succeed("nc -4 -w3 -z server 22")

      with subtest("a whitelisted IPv6 client is never banned"):
          brute_force(client, f"alice@{SERVER6}")
          server.sleep(10)
          server.fail(banned(CLIENT6))
          assert decisions(server, CLIENT6) == []
          client.succeed(f"sshpass -p foobar ssh {SSH_OPTS} alice@{SERVER6} true")

      with subtest("deleting the decision unbans"):
          unban(server, ATTACKER6)
          attacker.wait_until_succeeds(f"nc -6 -w3 -z {SERVER6} 22", timeout=30)
    '';
}
