# Example values of the module's options (services.garrison.*, without `enable`), as plain
# data. Used by the offline test (tests/nix_module.rs: rendered with nix/render.nix, then
# `garrison check`) and by the flake's `checks` (rendered by the real NixOS module).
{
  # The smallest useful setup: ban SSH brute forcers seen in the journal.
  sshd-only = {
    acquisitions.sshd.enable = true;
  };

  # A web server: nginx logs, a bouncer on another host, a third-party blocklist.
  web-bouncer-blocklist = {
    acquisitions.sshd.enable = true;
    acquisitions.nginx = {
      enable = true;
      files = [ "/var/log/nginx/*access.log" ];
      journalMatches = [ "_SYSTEMD_UNIT=nginx.service" ];
    };
    lapi.listen = "0.0.0.0:8080";
    lapi.tls = {
      certFile = "/var/lib/acme/lapi.example.org/fullchain.pem";
      keyFile = "/var/lib/acme/lapi.example.org/key.pem";
    };
    bouncers = {
      firewall.keyFile = "/run/secrets/garrison-firewall-bouncer";
      edge-router.keyFile = "/run/secrets/garrison-edge-router";
    };
    blocklists.firehol-level1 = {
      url = "https://iplists.firehol.org/files/firehol_level1.netset";
      duration = "24h";
      refresh = "12h";
    };
    settings = {
      daemon.log-format = "json";
      metrics.listen = "127.0.0.1:6061";
      profiles = [
        {
          name = "ip-ban";
          filters = "Alert.Remediation == true && Alert.GetScope() == 'Ip'";
          decisions = {
            type = "ban";
            duration = "4h";
          };
          escalation = {
            factor = 2.0;
            max = "7d";
          };
        }
      ];
    };
  };

  # IPv6: whitelisted IPv6 ranges, the Local API on IPv6 loopback, a router's forward hook.
  ipv6-whitelist = {
    acquisitions.sshd.enable = true;
    whitelist = [
      "2001:db8:42::/48"
      "2001:db8:1::2"
      "192.0.2.7"
    ];
    lapi.listen = "[::1]:8080";
    settings = {
      whitelists.private-ranges = false;
      whitelists.cidrs = [ "fd00:1234::/32" ];
      enforcement.nftables.hooks = [
        "input"
        "forward"
      ];
      enforcement.admin-cidrs = [ "2001:db8:ffff::/48" ];
    };
  };

  # The rest of the daemon: Central API (receive only), agent mode pushing to another
  # Local API, a syslog listener next to the journal shortcut, blocklists from a URL (JSON)
  # and from a local file, an explicit admin socket, and no local enforcement.
  central-agent-syslog = {
    acquisitions.sshd = {
      enable = true;
      journalMatches = [
        "_SYSTEMD_UNIT=sshd.service"
        "SYSLOG_IDENTIFIER=sshd-session"
        "SYSLOG_IDENTIFIER=sshd"
      ];
    };
    collections = [ "postfix" ];
    enforcement.nftables.enable = false;
    blocklists = {
      partners = {
        file = "/var/lib/partner-lists/bad-hosts.txt";
        duration = "12h";
        refresh = "1h";
      };
      vendor-json = {
        url = "https://lists.example.org/bad.json";
        format = "json";
        type = "ban";
      };
    };
    settings = {
      central = {
        enable = true;
        share-signals = false;
        pull-interval = "4h";
      };
      lapi = {
        url = "https://lapi.example.org:8080";
        unix-socket = "/run/garrison/lapi.sock";
      };
      acquisitions = [
        {
          type = "syslog";
          name = "mail-relay";
          syslog = {
            listen = "127.0.0.1:5514";
            protocol = "udp";
          };
        }
      ];
    };
  };
}
