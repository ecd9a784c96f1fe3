# (b) HTTP probing against nginx (many 404s on random paths) is banned; the ban also
# closes SSH, and an innocent client still gets the page. garrison reads nginx's log
# files through the nginx group, the only way in besides root.
{ self }:
let
  common = import ./common.nix;
in
{
  name = "garrison-nginx";

  defaults.imports = [ self.nixosModules.default ];

  nodes = {
    server =
      { pkgs, ... }:
      {
        imports = [ common.sshServer ];
        services.nginx = {
          enable = true;
          virtualHosts.server = {
            default = true;
            root = pkgs.writeTextDir "index.html" "hello from garrison's test\n";
          };
        };
        networking.firewall.allowedTCPPorts = [ 80 ];
        services.garrison.acquisitions.nginx.enable = true;
      };
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
      server.wait_for_unit("garrison.service")
      server.wait_for_unit("nginx.service")
      server.wait_for_open_port(80)
      attacker.wait_for_unit("multi-user.target")
      client.wait_for_unit("multi-user.target")

      with subtest("garrison reads nginx's logs"):
          server.succeed("systemctl show garrison -p SupplementaryGroups | grep -w nginx")
          server.succeed("grep -F /var/log/nginx /etc/garrison/garrison.json")
          attacker.succeed(f"curl -sf --max-time 5 http://{SERVER}/ | grep -F hello")

      with subtest("probing random paths is banned"):
          # http-probing: more than 10 distinct 404 paths in a short time. Stops once dropped.
          attacker.execute(
              "for i in $(seq 1 40); do"
              f" curl -s -o /dev/null --max-time 3 http://{SERVER}/probe-$i-$RANDOM || break;"
              " done"
          )
          server.wait_until_succeeds(banned(ATTACKER), timeout=60)
          assert_banned_by_garrison(server, ATTACKER)
          attacker.fail(f"curl -s --max-time 3 http://{SERVER}/")
          attacker.fail(f"nc -w3 -z {SERVER} 22")

      with subtest("an innocent client still gets the page"):
          client.succeed(f"curl -sf --max-time 5 http://{SERVER}/ | grep -F hello")
          server.fail(banned(CLIENT))

      with subtest("deleting the decision unbans"):
          unban(server, ATTACKER)
          attacker.wait_until_succeeds(f"curl -sf --max-time 3 http://{SERVER}/", timeout=30)
    '';
}
