# Pieces shared by garrison's VM tests.
#
# Addresses: every node is on VLAN 1 and gets 192.168.1.N and 2001:db8:1::N (N by sorted
# node name); the tests read them from `nodes.<name>.networking.primaryIPAddress`.
# 192.168.1.0/24 is private and garrison whitelists private ranges by default, so every
# server here sets `whitelists.private-ranges = false` (the IPv6 addresses are in the
# documentation range, which is not whitelisted).
{
  # An SSH server with a password user, protected by garrison on the nftables firewall.
  sshServer =
    { pkgs, ... }:
    {
      networking.nftables.enable = true;
      services.openssh = {
        enable = true;
        settings = {
          PasswordAuthentication = true;
          KbdInteractiveAuthentication = false;
          # OpenSSH >= 9.8 penalises failing sources itself (PerSourcePenalties): it would
          # refuse the attacker's connections before they are logged as failed passwords,
          # and the test would measure OpenSSH instead of garrison.
          PerSourcePenaltyExemptList = "192.168.1.0/24,2001:db8:1::/64";
        };
      };
      users.users.alice = {
        isNormalUser = true;
        password = "foobar";
      };
      services.garrison = {
        enable = true;
        acquisitions.sshd.enable = true;
        settings = {
          whitelists.private-ranges = false;
          daemon.log-level = "debug";
        };
      };
      environment.systemPackages = [ pkgs.curl ];
    };

  # Attack and client tools.
  tools =
    { pkgs, ... }:
    {
      environment.systemPackages = [
        pkgs.sshpass
        pkgs.netcat # libressl nc: -z -w
        pkgs.curl
      ];
    };

  # Python helpers for the test scripts.
  python = ''
    import json

    SSH_OPTS = (
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        " -o PreferredAuthentications=password -o PubkeyAuthentication=no"
        " -o ConnectTimeout=5"
    )


    def brute_force(machine, target, attempts=12):
        """Failed password logins; stops early once the connection is dropped (banned)."""
        for i in range(attempts):
            status, _ = machine.execute(
                f"sshpass -p wrong-password-{i} ssh {SSH_OPTS} {target} true"
            )
            assert status != 0, "a wrong password must not log in"
            if status == 255 and machine.execute(f"nc -w3 -z {target.split('@')[1]} 22")[0] != 0:
                break


    def banned(ip, table="garrison"):
        """Shell test: the address is an element of garrison's set for single addresses
        (banned-ipv4 or banned-ipv6 in `inet garrison`), asked to the kernel."""
        family = "ipv6" if ":" in ip else "ipv4"
        return f"nft get element inet {table} banned-{family} '{{ {ip} }}'"


    def decisions(machine, ip):
        """The daemon's active decisions for an address, through the CLI (which finds the
        admin socket from GARRISON_CONFIG, set by the module for every login shell)."""
        out = json.loads(machine.succeed(f"garrison decisions list -o json --ip '{ip}'"))
        return [d for d in out["decisions"] if d["value"] == ip]


    def assert_banned_by_garrison(machine, ip):
        found = decisions(machine, ip)
        assert any(d["type"] == "ban" for d in found), f"no ban decision for {ip}: {found}"


    def unban(machine, ip):
        machine.succeed(f"garrison decisions delete --ip '{ip}'")
        machine.wait_until_fails(banned(ip), timeout=30)
        assert decisions(machine, ip) == [], f"{ip} still has decisions"
  '';
}
