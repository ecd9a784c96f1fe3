# (d) nixpkgs' crowdsec-firewall-bouncer on a third VM, pointed at garrison's Local API
# with a key file, enforces what garrison decides: an SSH brute force against `server` also
# closes the `firewall` host to the attacker, and deleting the decision reopens both.
{ self }:
let
  common = import ./common.nix;
  # A test key, so both VMs know it. On real machines keyFile names a file outside the
  # store (agenix, sops-nix, or one written once by hand); garrison never copies it there:
  # systemd loads it as the credential /run/credentials/garrison.service/firewall.
  bouncerKey = "0123456789abcdef0123456789abcdef";
  keyFile = "/etc/garrison-test/bouncer-key";
  # Where the bouncer's nftables set-only mode keeps IPv4 bans (nixpkgs' defaults: the
  # module declares table `ip crowdsec` with this set in networking.nftables.tables).
  bouncerSet = "ip crowdsec crowdsec-blacklists";
in
{
  name = "garrison-bouncer";

  defaults.imports = [ self.nixosModules.default ];

  nodes = {
    server = {
      imports = [ common.sshServer ];
      environment.etc."garrison-test/bouncer-key".text = bouncerKey;
      services.garrison = {
        lapi.listen = "0.0.0.0:8080";
        openFirewall = true;
        bouncers.firewall.keyFile = keyFile;
      };
    };

    firewall =
      { nodes, ... }:
      {
        networking.nftables.enable = true;
        services.openssh.enable = true; # something for the attacker to knock on
        environment.etc."garrison-test/bouncer-key".text = bouncerKey;
        services.crowdsec-firewall-bouncer = {
          enable = true;
          secrets.apiKeyPath = keyFile;
          settings = {
            api_url = "http://${nodes.server.networking.primaryIPAddress}:8080/";
            update_frequency = "2s";
            log_level = "debug";
          };
        };
      };

    attacker = common.tools;
  };

  testScript =
    { nodes, ... }:
    ''
      ${common.python}
      ATTACKER = "${nodes.attacker.networking.primaryIPAddress}"
      SERVER = "${nodes.server.networking.primaryIPAddress}"
      FIREWALL = "${nodes.firewall.networking.primaryIPAddress}"
      KEY = "${bouncerKey}"

      # The Local API first, so the bouncer's first connection succeeds.
      server.start()
      server.wait_for_unit("garrison.service")
      server.wait_for_open_port(8080)
      firewall.start()
      attacker.start()
      firewall.wait_for_unit("crowdsec-firewall-bouncer.service")
      firewall.wait_for_open_port(22)
      attacker.wait_for_unit("multi-user.target")

      with subtest("the key reaches garrison as a credential, not through the store"):
          server.succeed("grep -F /run/credentials/garrison.service/firewall /etc/garrison/garrison.json")
          server.fail(f"grep -F {KEY} /etc/garrison/garrison.json")
          server.succeed(
              "systemctl show garrison.service -p LoadCredential --value"
              " | grep -F 'firewall:${keyFile}'"
          )
          server.succeed(
              f"curl -sf -H 'X-Api-Key: {KEY}' 'http://127.0.0.1:8080/v1/decisions/stream?startup=true'"
          )
          server.fail("curl -sf -H 'X-Api-Key: wrong' 'http://127.0.0.1:8080/v1/decisions/stream?startup=true'")

      with subtest("the attacker reaches both hosts before the attack"):
          attacker.succeed(f"nc -w3 -z {SERVER} 22")
          attacker.succeed(f"nc -w3 -z {FIREWALL} 22")

      with subtest("the bouncer registered with its key"):
          server.wait_until_succeeds("garrison bouncers list -o json | grep -F firewall", timeout=30)

      with subtest("garrison's decision is enforced by the bouncer too"):
          brute_force(attacker, f"alice@{SERVER}")
          server.wait_until_succeeds(banned(ATTACKER), timeout=60)
          firewall.wait_until_succeeds(f"nft get element ${bouncerSet} '{{ {ATTACKER} }}'", timeout=60)
          attacker.fail(f"nc -w3 -z {FIREWALL} 22")
          attacker.fail(f"nc -w3 -z {SERVER} 22")

      with subtest("deleting the decision reaches the bouncer"):
          unban(server, ATTACKER)
          firewall.wait_until_fails(f"nft get element ${bouncerSet} '{{ {ATTACKER} }}'", timeout=60)
          attacker.wait_until_succeeds(f"nc -w3 -z {FIREWALL} 22", timeout=30)
          attacker.wait_until_succeeds(f"nc -w3 -z {SERVER} 22", timeout=30)
    '';
}
