# (a) SSH brute force from an attacker VM: garrison bans it in nftables (set banned-ipv4
# of table `inet garrison`), an innocent client still logs in, the ban survives a reload
# and a restart of garrison, and `garrison decisions delete --ip` lifts it.
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
    ''
      ${common.python}
      ATTACKER = "${nodes.attacker.networking.primaryIPAddress}"
      CLIENT = "${nodes.client.networking.primaryIPAddress}"
      # By address: the name `server` also resolves to its IPv6 address.
      SERVER = "${nodes.server.networking.primaryIPAddress}"

      start_all()
      server.wait_for_unit("sshd.service")
      # Type=notify: active once the first nftables sync is done.
      server.wait_for_unit("garrison.service")
      server.wait_for_open_port(22)
      attacker.wait_for_unit("multi-user.target")
      client.wait_for_unit("multi-user.target")

      with subtest("the unit is confined"):
          def prop(name):
              return server.succeed(f"systemctl show garrison.service -p {name} --value").strip()

          assert prop("Type") == "notify", prop("Type")
          assert prop("CapabilityBoundingSet") == "cap_net_admin", prop("CapabilityBoundingSet")
          assert prop("AmbientCapabilities") == "cap_net_admin", prop("AmbientCapabilities")
          assert prop("DynamicUser") == "yes"
          assert prop("ProtectSystem") == "strict"
          assert prop("NoNewPrivileges") == "yes"
          assert prop("StateDirectoryMode") == "0700", prop("StateDirectoryMode")
          assert prop("WatchdogUSec") == "1min", prop("WatchdogUSec")
          assert "systemd-journal" in prop("SupplementaryGroups").split()
          server.succeed("stat -c %a /var/lib/private/garrison | grep -x 700")
          print(server.succeed("systemd-analyze security garrison.service | tail -n 1"))

      with subtest("the CLI finds the daemon, and the table has the expected sets"):
          assert decisions(server, ATTACKER) == []
          print(server.succeed("garrison lapi status"))
          server.succeed("test -S /var/lib/garrison/garrison.sock")
          for s in ["banned-ipv4", "banned-ipv6", "banned-ipv4-ranges", "banned-ipv6-ranges"]:
              server.succeed(f"nft list set inet garrison {s}")

      with subtest("everyone reaches sshd before the attack"):
          attacker.succeed(f"nc -w3 -z {SERVER} 22")
          client.succeed(f"sshpass -p foobar ssh {SSH_OPTS} alice@{SERVER} true")
          server.fail(banned(ATTACKER))

      with subtest("the brute force is banned"):
          brute_force(attacker, f"alice@{SERVER}")
          server.wait_until_succeeds(banned(ATTACKER), timeout=60)
          attacker.fail(f"nc -w3 -z {SERVER} 22")
          assert_banned_by_garrison(server, ATTACKER)

      with subtest("an innocent client still logs in"):
          client.succeed(f"sshpass -p foobar ssh {SSH_OPTS} alice@{SERVER} true")
          server.fail(banned(CLIENT))

      with subtest("the ban survives a reload and a restart of garrison"):
          server.succeed("systemctl reload garrison.service")
          server.wait_until_succeeds("journalctl -u garrison.service | grep -q 'reload done'", timeout=30)
          server.succeed(banned(ATTACKER))
          server.systemctl("restart garrison.service")
          server.wait_for_unit("garrison.service")
          server.succeed(banned(ATTACKER))
          attacker.fail(f"nc -w3 -z {SERVER} 22")

      with subtest("deleting the decision unbans"):
          unban(server, ATTACKER)
          attacker.wait_until_succeeds(f"nc -w3 -z {SERVER} 22", timeout=30)
    '';
}
