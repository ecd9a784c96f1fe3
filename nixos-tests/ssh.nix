# SSH brute force from an attacker VM: garrison bans it in nftables, an innocent client
# still logs in, and `garrison decisions delete` lifts the ban.
{ self }:
let
  common = import ./common.nix;
in
{
  name = "garrison-ssh";

  defaults.imports = [ self.nixosModules.default ];

  nodes = {
    server = common.sshServer;
    attacker = common.tools;
    client = common.tools;
  };

  testScript =
    { nodes, ... }:
    let
      attackerIp = nodes.attacker.networking.primaryIPAddress;
      clientIp = nodes.client.networking.primaryIPAddress;
    in
    ''
      ${common.python}
      ATTACKER = "${attackerIp}"
      CLIENT = "${clientIp}"
      # By address: the name `server` also resolves to its IPv6 address.
      SERVER = "${nodes.server.networking.primaryIPAddress}"

      start_all()
      server.wait_for_unit("garrison.service")
      server.wait_for_unit("sshd.service")
      server.wait_for_open_port(22)
      attacker.wait_for_unit("multi-user.target")
      client.wait_for_unit("multi-user.target")

      with subtest("the unit is confined"):
          server.succeed("systemctl show garrison -p Type | grep -x Type=notify")
          caps = server.succeed("systemctl show garrison -p CapabilityBoundingSet")
          assert caps.strip() == "CapabilityBoundingSet=cap_net_admin", caps
          server.succeed("systemctl show garrison -p DynamicUser | grep -x DynamicUser=yes")
          server.succeed("systemctl show garrison -p ProtectSystem | grep -x ProtectSystem=strict")
          print(server.succeed("systemd-analyze security garrison.service | tail -n 1"))

      with subtest("everyone reaches sshd before the attack"):
          attacker.succeed(f"nc -w3 -z {SERVER} 22")
          client.succeed(f"sshpass -p foobar ssh {SSH_OPTS} alice@{SERVER} true")
          server.fail(banned(ATTACKER))

      with subtest("the brute force is banned"):
          brute_force(attacker, f"alice@{SERVER}")
          server.wait_until_succeeds(banned(ATTACKER), timeout=60)
          attacker.fail(f"nc -w3 -z {SERVER} 22")
          server.succeed(f"{GARRISON} decisions list | grep -wF -- '{ATTACKER}'")

      with subtest("an innocent client still logs in"):
          client.succeed(f"sshpass -p foobar ssh {SSH_OPTS} alice@{SERVER} true")
          server.fail(banned(CLIENT))

      with subtest("the ban survives a restart of garrison"):
          server.systemctl("restart garrison.service")
          server.wait_for_unit("garrison.service")
          server.succeed(banned(ATTACKER))
          attacker.fail(f"nc -w3 -z {SERVER} 22")

      with subtest("deleting the decision unbans"):
          server.succeed(f"{GARRISON} decisions delete --ip '{ATTACKER}'")
          server.wait_until_fails(banned(ATTACKER), timeout=30)
          attacker.wait_until_succeeds(f"nc -w3 -z {SERVER} 22", timeout=30)
          server.fail(f"{GARRISON} decisions list | grep -wF -- '{ATTACKER}'")
    '';
}
