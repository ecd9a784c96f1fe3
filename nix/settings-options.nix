# The typed options under `services.garrison.settings`, as plain data (no nixpkgs, no lib),
# so that the NixOS module (modules/garrison.nix) declares them and the offline test
# (tests/nix_module.rs) can check every path, default and enum against
# schemas/garrison.schema.json without evaluating nixpkgs.
#
# A section:  { description; options = { <name> = section or leaf; }; }
# A leaf:     { type; default; description; example ? ...; }
#   type: "str" | "bool" | "int" | "nullOrStr" | "listOfStr" | "duration"
#         | { enum = [ ... ]; } | { listOfEnum = [ ... ]; }
#   moduleDefault = "<why>" marks a default that deliberately differs from the daemon's.
# Names are the config's own kebab-case keys. Everything not declared here stays freeform
# (any JSON) and is checked by `garrison check` when the system is built.
# Some keys are deliberately missing because a top-level module option owns them:
# `lapi.listen` (services.garrison.lapi.listen), `lapi.tls` (services.garrison.lapi.tls,
# systemd credentials), `lapi.bouncer-key-files` (services.garrison.bouncers) and
# `enforcement.enable` (services.garrison.enforcement.nftables.enable).
{
  daemon = {
    description = "Daemon-wide settings: state directory and logging.";
    options = {
      state-dir = {
        type = "str";
        default = "/var/lib/garrison";
        description = ''
          Directory for the database and file cursors. The default is the unit's
          `StateDirectory`; another path is added to `ReadWritePaths` and must exist.
        '';
      };
      log-level = {
        type.enum = [
          "error"
          "warn"
          "info"
          "debug"
          "trace"
        ];
        default = "info";
        description = "Log verbosity.";
      };
      log-format = {
        type.enum = [
          "text"
          "json"
        ];
        default = "text";
        description = "Log line format on stderr; the journal always gets structured fields.";
      };
    };
  };

  rule-dirs = {
    type = "listOfStr";
    default = [ ];
    example = [ "/etc/garrison/rules" ];
    description = ''
      Extra directories of rule files (`*.kdl`), loaded after the shipped rules; a rule with
      the same name as a shipped one replaces it. Store paths are best: the configuration
      is checked at build time, in the sandbox.
    '';
  };

  whitelists = {
    description = "Sources that must never be banned.";
    options = {
      private-ranges = {
        type = "bool";
        default = true;
        description = ''
          Whitelist loopback, RFC 1918, CGNAT, link-local and IPv6 unique-local ranges.
          Turn it off on hosts whose attackers can come from private networks.
        '';
      };
      cidrs = {
        type = "listOfStr";
        default = [ ];
        description = ''
          Addresses and ranges to whitelist, added to
          {option}`services.garrison.whitelist`.
        '';
      };
      expressions = {
        type = "listOfStr";
        default = [ ];
        example = [ "evt.Meta.http_user_agent == 'uptime-monitor/1.0'" ];
        description = "Filter expressions over the event; an event for which any is true is whitelisted.";
      };
    };
  };

  enforcement = {
    description = "How decisions are enforced in the kernel.";
    options = {
      dry-run = {
        type = "bool";
        default = false;
        description = "Log what would be enforced without touching the kernel.";
      };
      admin-cidrs = {
        type = "listOfStr";
        default = [ ];
        example = [ "198.51.100.0/24" ];
        description = "Addresses of the operators: a decision covering any of them is refused and logged.";
      };
      nftables = {
        description = "The nftables table garrison owns (family `inet`).";
        options = {
          table = {
            type = "str";
            default = "garrison";
            description = "Table name (family `inet`, so one table covers IPv4 and IPv6).";
          };
          hooks = {
            type.listOfEnum = [
              "input"
              "forward"
            ];
            default = [ "input" ];
            description = "Hooks to filter at: `input`, and optionally `forward` (routers, containers).";
          };
          priority = {
            type = "int";
            default = -10;
            description = "Chain priority; the default runs before NixOS's `nixos-fw` (priority 0).";
          };
          action = {
            type.enum = [
              "drop"
              "reject"
            ];
            default = "drop";
            description = "What happens to banned traffic.";
          };
          keep-on-stop = {
            type = "bool";
            default = true;
            description = "Keep bans in the kernel when garrison stops (they still expire).";
          };
        };
      };
    };
  };

  lapi = {
    description = "The CrowdSec-compatible Local API, for bouncers, agents and the CLI.";
    options = {
      enable = {
        type = "bool";
        default = true;
        description = "Serve the Local API.";
      };
      unix-socket = {
        type = "nullOrStr";
        default = null;
        example = "/run/garrison/lapi.sock";
        description = ''
          The Unix socket of the Local API and of garrison's admin routes, which the
          `garrison` CLI uses (`garrison decisions list`, ...). `null`: {file}`garrison.sock`
          in `daemon.state-dir`. Whoever can open it administers garrison; with the
          module's defaults that is root only.
        '';
      };
      auto-register-cidrs = {
        type = "listOfStr";
        default = [ ];
        description = "Machines connecting from these ranges are validated on registration.";
      };
      url = {
        type = "nullOrStr";
        default = null;
        example = "https://lapi.example.org:8080";
        description = "Push alerts to, and pull decisions from, another garrison or CrowdSec LAPI instead.";
      };
    };
  };

  central = {
    description = "CrowdSec's Central API: community blocklist and signal sharing.";
    options = {
      enable = {
        type = "bool";
        default = false;
        description = ''
          Talk to CrowdSec's Central API: register a machine (credentials in
          {file}`capi-credentials.json` in the state directory), pull the community
          blocklist and the console's subscribed lists, and share signals. Off by default:
          garrison then makes no outbound call. To enroll in the console, run
          `garrison console enroll KEY` as root once the daemon has registered (the
          credentials file exists), so that it reuses the daemon's credentials.
        '';
      };
      share-signals = {
        type = "bool";
        default = true;
        description = ''
          Send a signal for each local alert (scenario, source address, times, decisions;
          never log lines or events). `false` only receives.
        '';
      };
      pull-interval = {
        type = "duration";
        default = "2h";
        description = "How often to pull the community blocklist (deltas; ± 1/24 of jitter).";
      };
      url = {
        type = "str";
        default = "https://api.crowdsec.net/";
        description = "The Central API's URL.";
      };
    };
  };

  metrics = {
    description = "The Prometheus metrics endpoint.";
    options = {
      enable = {
        type = "bool";
        default = true;
        description = "Serve metrics.";
      };
      listen = {
        type = "str";
        default = "127.0.0.1:6060";
        description = "Address and port of the metrics endpoint.";
      };
    };
  };
}
