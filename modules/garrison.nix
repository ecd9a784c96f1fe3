# NixOS module for garrison, a CrowdSec-compatible intrusion-prevention daemon.
#
# The configuration is rendered by the pure function ../nix/render.nix (shared with the
# offline test) and validated at build time with `garrison check`, so a bad configuration
# fails `nixos-rebuild` instead of the running daemon.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.garrison;

  inherit (lib)
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optional
    optionals
    types
    ;

  jsonFormat = pkgs.formats.json { };
  render = import ../nix/render.nix;
  settingsOptions = import ../nix/settings-options.nix;

  unitName = "garrison";
  credentialsDirectory = "/run/credentials/${unitName}.service";
  defaultStateDir = "/var/lib/garrison";
  configPath = "/etc/garrison/garrison.json";

  # Same grammar as the schema's Duration ("10s", "4h", "1h30m").
  durationType = types.strMatching "([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h|d))+|0";

  # A secret's location: an absolute path as a string, outside the Nix store. A Nix path
  # literal (`./key`) is not a string and is refused, because evaluating it would copy the
  # secret into the world-readable store.
  secretPath =
    types.addCheck (types.strMatching "/.+") (p: !lib.hasPrefix builtins.storeDir p)
    // {
      description = "absolute path (a string) outside the Nix store";
    };

  # Type descriptors of nix/settings-options.nix -> NixOS option types.
  typeOf =
    t:
    if builtins.isAttrs t then
      if t ? enum then types.enum t.enum else types.listOf (types.enum t.listOfEnum)
    else
      {
        str = types.str;
        bool = types.bool;
        int = types.int;
        nullOrStr = types.nullOr types.str;
        listOfStr = types.listOf types.str;
        duration = durationType;
      }
      .${t};

  # Sections become freeform submodules (unknown keys pass through to the daemon, whose
  # build-time check rejects typos with a precise message); leaves become typed options.
  mkSettingsOptions = lib.mapAttrs (
    _name: o:
    if o ? options then
      mkOption {
        inherit (o) description;
        default = { };
        type = types.submodule {
          freeformType = jsonFormat.type;
          options = mkSettingsOptions o.options;
        };
      }
    else
      mkOption (
        {
          type = typeOf o.type;
          inherit (o) default description;
        }
        // lib.optionalAttrs (o ? example) { inherit (o) example; }
      )
  );

  nginxErrorLog = lib.head (lib.splitString " " config.services.nginx.logError);

  rendered = render {
    inherit (cfg)
      settings
      collections
      acquisitions
      whitelist
      enforcement
      lapi
      bouncers
      blocklists
      ;
    inherit credentialsDirectory;
  };

  uncheckedConfig = jsonFormat.generate "garrison.json" rendered;

  canRunCheck = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  # `nixos-rebuild` builds this, so a configuration the daemon would reject never reaches
  # the machine. Runs in the sandbox: files the configuration names outside the store (key
  # files, log files, blocklist files) are not read by `garrison check`.
  checkedConfig =
    if cfg.checkConfig && canRunCheck then
      pkgs.runCommand "garrison-checked.json"
        {
          nativeBuildInputs = [ cfg.package ];
          preferLocalBuild = true;
        }
        ''
          garrison check --config ${uncheckedConfig}
          ln -s ${uncheckedConfig} "$out"
        ''
    else
      uncheckedConfig;

  stateDir = cfg.settings.daemon.state-dir;
  needsNetwork = cfg.settings.central.enable || lib.any (b: b.url != null) (lib.attrValues cfg.blocklists);
  listenPort = lib.toInt (lib.last (lib.splitString ":" cfg.lapi.listen));
  listensOnLoopback = builtins.match "(127\\.[0-9.]+|\\[::1]|localhost):[0-9]+" cfg.lapi.listen != null;
  enforces = cfg.enforcement.nftables.enable;
in
{
  options.services.garrison = {
    enable = mkEnableOption "garrison, a CrowdSec-compatible intrusion-prevention daemon";

    package = mkPackageOption pkgs "garrison" { };

    settings = mkOption {
      type = types.submodule {
        freeformType = jsonFormat.type;
        options = mkSettingsOptions settingsOptions;
      };
      default = { };
      example = literalExpression ''
        {
          whitelists.private-ranges = false;
          daemon.log-level = "debug";
          enforcement.nftables.hooks = [ "input" "forward" ];
          profiles = [{
            name = "ip-ban";
            filters = "Alert.Remediation == true && Alert.GetScope() == 'Ip'";
            decisions = { type = "ban"; duration = "4h"; };
            escalation = { factor = 2.0; max = "7d"; };
          }];
        }
      '';
      description = ''
        garrison's configuration, with the daemon's own kebab-case keys; it is written to
        {file}`${configPath}` as JSON and checked with `garrison check` at build time.
        See {file}`share/garrison/schemas/garrison.schema.json` in the package (or
        `garrison schema`) for every key. The main keys are typed here; the others
        (`profiles`, raw `acquisitions`, ...) are passed through as they are.

        Lists given here are appended to what the shortcut options of this module
        (acquisitions, collections, whitelist, blocklists, bouncers) generate. A raw
        `syslog` acquisition must listen on a port above 1023 (the unit has no
        `CAP_NET_BIND_SERVICE`); files outside the store that the configuration names
        (`rule-dirs`, blocklist files) must be readable by the unit's dynamic user, and
        `rule-dirs` also at build time, when `garrison check` runs in the sandbox. Secrets
        go through {option}`services.garrison.bouncers` and
        {option}`services.garrison.lapi.tls` instead (systemd credentials).
      '';
    };

    collections = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "apache2"
        "wordpress"
      ];
      description = ''
        Rule collections to enable, in addition to those of the enabled acquisition
        shortcuts (`linux` and `sshd` for sshd, `linux` and `nginx` for nginx).
      '';
    };

    acquisitions = {
      sshd = {
        enable = mkOption {
          type = types.bool;
          default = config.services.openssh.enable;
          defaultText = literalExpression "config.services.openssh.enable";
          description = ''
            Whether to read OpenSSH's messages from the journal (type `syslog`) and enable
            the `linux` and `sshd` collections (brute force, user enumeration, ...).
          '';
        };
        journalMatches = mkOption {
          type = types.listOf types.str;
          default = [
            "_SYSTEMD_UNIT=sshd.service"
            "SYSLOG_IDENTIFIER=sshd-session"
          ]
          ++ optional config.services.openssh.startWhenNeeded "SYSLOG_IDENTIFIER=sshd";
          defaultText = literalExpression ''
            [ "_SYSTEMD_UNIT=sshd.service" "SYSLOG_IDENTIFIER=sshd-session" ]
            ++ lib.optional config.services.openssh.startWhenNeeded "SYSLOG_IDENTIFIER=sshd"
          '';
          description = ''
            journald matches for OpenSSH; entries matching any of them are read.
            `sshd-session` is the per-connection process of OpenSSH ≥ 9.8.
          '';
        };
      };

      nginx = {
        enable = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = ''
            Whether to read nginx's logs (type `nginx`) and enable the `linux` and `nginx`
            collections (probing, crawling, sensitive files, CVE probes, ...). garrison gets
            the nginx group to read {file}`/var/log/nginx`.
          '';
        };
        files = mkOption {
          type = types.listOf types.str;
          default = [ "/var/log/nginx/*access.log" ] ++ optional (lib.hasPrefix "/" nginxErrorLog) nginxErrorLog;
          defaultText = literalExpression ''
            [ "/var/log/nginx/*access.log" ]
            ++ (the path of config.services.nginx.logError, when it is a file)
          '';
          description = "Log files or globs to tail; new files matching a glob are picked up.";
        };
        journalMatches = mkOption {
          type = types.listOf types.str;
          default = optional (lib.hasPrefix "stderr" nginxErrorLog) "_SYSTEMD_UNIT=nginx.service";
          defaultText = literalExpression ''
            lib.optional (config.services.nginx.logError starts with "stderr") "_SYSTEMD_UNIT=nginx.service"
          '';
          description = ''
            journald matches for nginx's error log (NixOS sends it to stderr, hence the
            journal, by default); read as type `syslog`.
          '';
        };
      };
    };

    whitelist = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "203.0.113.0/24"
        "2001:db8:42::/48"
      ];
      description = ''
        Addresses and CIDR ranges (IPv4 or IPv6) that are never banned. Private ranges are
        whitelisted by default too, see {option}`services.garrison.settings.whitelists.private-ranges`.
      '';
    };

    enforcement.nftables.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether garrison enforces its bans itself, in its own nftables table (`inet garrison`
        unless {option}`services.garrison.settings.enforcement.nftables.table` says otherwise).
        The unit then gets `CAP_NET_ADMIN`, and nothing else.

        The table is garrison's, not part of {option}`networking.nftables.tables`, so
        reloading the firewall does not touch it; when a reload or restart of
        `nftables.service` removes it anyway (`flushRuleset`, or a `flush ruleset` in
        {option}`networking.nftables.ruleset`), garrison notices within half a second and
        rebuilds the table and its bans from its database. Disable it when only bouncers
        enforce (the unit then has no capability at all).
      '';
    };

    lapi.listen = mkOption {
      type = types.strMatching ".+:[0-9]+";
      default = "127.0.0.1:8080";
      example = "0.0.0.0:8080";
      description = ''
        Address and port of the CrowdSec-compatible Local API, which bouncers
        (`crowdsec-firewall-bouncer`, ...) query. IPv6 addresses go in brackets: `[::]:8080`.
      '';
    };

    lapi.tls = mkOption {
      type = types.nullOr (
        types.submodule {
          options = {
            certFile = mkOption {
              type = types.either types.path secretPath;
              example = "/var/lib/acme/lapi.example.org/fullchain.pem";
              description = "The certificate chain (PEM).";
            };
            keyFile = mkOption {
              type = secretPath;
              example = "/var/lib/acme/lapi.example.org/key.pem";
              description = ''
                The private key (PEM), outside the Nix store. Like the certificate, systemd
                loads it as a credential (`lapi-tls-key`) when the unit starts: a renewed
                certificate needs a restart of {file}`garrison.service`.
              '';
            };
          };
        }
      );
      default = null;
      description = ''
        Serve the Local API over HTTPS (bouncers on other hosts send their keys over it).
        Plain HTTP when `null`.
      '';
    };

    bouncers = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.keyFile = mkOption {
            type = secretPath;
            example = "/run/secrets/garrison-firewall-bouncer";
            description = ''
              Absolute path of a file holding this bouncer's API key (at least 16
              characters, e.g. from `openssl rand -base64 32`; surrounding whitespace is
              ignored), such as one managed by agenix or sops-nix. systemd reads it as root
              when the unit starts and hands it to the daemon as the credential
              {file}`${credentialsDirectory}/<name>` (`LoadCredential`); it never enters
              the Nix store. Give a string, not a Nix path literal. A changed key takes
              effect at the next restart of {file}`garrison.service` (credentials are
              loaded at start).
            '';
          };
        }
      );
      default = { };
      example = literalExpression ''
        { firewall.keyFile = "/run/secrets/garrison-firewall-bouncer"; }
      '';
      description = ''
        Bouncers allowed to query the Local API, by name (letters, digits, `_`, `.`, `-`).
        Each key reaches the daemon as {file}`${credentialsDirectory}/<name>`, which the
        rendered configuration lists in `lapi.bouncer-key-files`. Bouncers can also be
        added imperatively with `garrison bouncers add NAME`.
      '';
    };

    blocklists = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            url = mkOption {
              type = types.nullOr types.str;
              default = null;
              example = "https://iplists.firehol.org/files/firehol_level1.netset";
              description = "Where to download the list. Give exactly one of `url` and `file`.";
            };
            file = mkOption {
              type = types.nullOr (types.either types.path types.str);
              default = null;
              example = literalExpression "./blocklists/partners.txt";
              description = ''
                Or a local file: a Nix path (copied to the store, fine for public lists) or
                the absolute path of a file managed by cron or another service, readable by
                the unit's dynamic user.
              '';
            };
            format = mkOption {
              type = types.enum [
                "text"
                "json"
              ];
              default = "text";
              description = "`text`: one address or CIDR per line, `#` comments; `json`: an array.";
            };
            type = mkOption {
              type = types.str;
              default = "ban";
              description = "The decision type for its entries.";
            };
            duration = mkOption {
              type = durationType;
              default = "24h";
              description = "How long its decisions last after the last refresh that still listed them.";
            };
            refresh = mkOption {
              type = durationType;
              default = "6h";
              description = "How often to refresh the list.";
            };
          };
        }
      );
      default = { };
      example = literalExpression ''
        { firehol-level1.url = "https://iplists.firehol.org/files/firehol_level1.netset"; }
      '';
      description = "Third-party blocklists turned into decisions with origin `lists:<name>`.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to open the Local API's TCP port (from {option}`services.garrison.lapi.listen`)
        in {option}`networking.firewall`, for bouncers on other hosts.
      '';
    };

    extraGroups = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "caddy" ];
      description = ''
        Supplementary groups of the unit, to read log files of other services.
        `systemd-journal` and, with the nginx shortcut, nginx's group are always added.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to run `garrison check` on the configuration at build time. Skipped when
        cross-compiling (the build platform cannot run the package).
      '';
    };

    configFile = mkOption {
      type = types.path;
      readOnly = true;
      default = checkedConfig;
      defaultText = literalExpression "the rendered, checked configuration";
      description = "The configuration file the daemon runs with (also {file}`${configPath}`).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = !(cfg.settings.lapi ? listen);
        message = "services.garrison: set services.garrison.lapi.listen, not settings.lapi.listen.";
      }
      {
        assertion = !(cfg.settings.enforcement ? enable);
        message = "services.garrison: set services.garrison.enforcement.nftables.enable, not settings.enforcement.enable.";
      }
      {
        assertion = !(cfg.settings.lapi ? tls);
        message = "services.garrison: set services.garrison.lapi.tls (systemd credentials), not settings.lapi.tls.";
      }
      {
        assertion = !(cfg.bouncers ? lapi-tls-cert || cfg.bouncers ? lapi-tls-key);
        message = "services.garrison.bouncers: `lapi-tls-cert` and `lapi-tls-key` name the TLS credentials; choose other names.";
      }
      {
        assertion = cfg.bouncers == { } || cfg.settings.lapi.enable;
        message = "services.garrison: bouncers need the Local API (settings.lapi.enable).";
      }
    ]
    ++ lib.mapAttrsToList (name: _: {
      assertion = builtins.match "[A-Za-z0-9_.-]+" name != null;
      message = ''
        services.garrison.bouncers.${name}: the name must be made of letters, digits, `_`,
        `.` and `-` (it names a systemd credential).
      '';
    }) cfg.bouncers
    ++ lib.mapAttrsToList (name: b: {
      assertion = (b.url == null) != (b.file == null);
      message = "services.garrison.blocklists.${name}: give exactly one of url and file.";
    }) cfg.blocklists;

    warnings = optional (cfg.openFirewall && listensOnLoopback) ''
      services.garrison.openFirewall opens port ${toString listenPort}, but the Local API
      listens on ${cfg.lapi.listen} only; set services.garrison.lapi.listen (e.g. "0.0.0.0:${toString listenPort}").
    '';

    environment.systemPackages = [ cfg.package ];
    environment.etc."garrison/garrison.json".source = checkedConfig;
    # The CLI reads it to find the daemon's admin socket (`lapi.unix-socket`, by default
    # <state-dir>/garrison.sock), so `garrison decisions list`, `garrison nft status` or
    # `garrison check` work for root without flags.
    environment.variables.GARRISON_CONFIG = configPath;

    networking.firewall.allowedTCPPorts = optional cfg.openFirewall listenPort;

    systemd.services.${unitName} = {
      description = "garrison intrusion prevention";
      documentation = [ "file://${cfg.package}/share/garrison/schemas/garrison.schema.json" ];
      wantedBy = [ "multi-user.target" ];
      # The firewall first, so its boot-time ruleset load happens before garrison creates its
      # table. Later reloads and restarts of nftables.service, even `flush ruleset`, need no
      # hook: garrison checks its table twice a second and rebuilds and refills it.
      after = [
        "network.target"
        "nftables.service"
        "firewall.service"
      ]
      ++ optional needsNetwork "network-online.target";
      # Blocklist downloads and the Central API pull at start.
      wants = optional needsNetwork "network-online.target";
      # The configuration is read from /etc, so a changed configuration is a reload (SIGHUP,
      # state and bans kept), not a restart.
      reloadTriggers = [ checkedConfig ];
      # For the daemon, if it shells out: nft for the table, journalctl for the journal.
      path = optional enforces pkgs.nftables ++ [ config.systemd.package ];

      serviceConfig = {
        # READY=1 once the first nftables sync holds every active ban; RELOADING=1/READY=1
        # around SIGHUP reloads.
        Type = "notify";
        NotifyAccess = "main";
        # The engine thread feeds the watchdog (every WatchdogSec/2): a stuck engine gets
        # the service restarted.
        WatchdogSec = "60s";
        ExecStart = "${lib.getExe cfg.package} run --config ${configPath}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = 5;
        KillMode = "mixed";
        TimeoutStopSec = 30;
        LimitNOFILE = 65536;

        DynamicUser = true;
        User = "garrison";
        Group = "garrison";
        SupplementaryGroups = [
          "systemd-journal"
        ]
        ++ optional (cfg.acquisitions.nginx.enable && config.services.nginx.enable) config.services.nginx.group
        ++ cfg.extraGroups;
        # The database, file and journal cursors, Central API credentials, and the admin
        # socket garrison.sock: the daemon's alone (root reaches it through
        # /var/lib/garrison -> /var/lib/private/garrison).
        StateDirectory = "garrison";
        StateDirectoryMode = "0700";
        WorkingDirectory = "%S/garrison";
        ReadWritePaths = optional (stateDir != defaultStateDir) stateDir;
        LoadCredential =
          lib.mapAttrsToList (name: b: "${name}:${b.keyFile}") cfg.bouncers
          ++ optionals (cfg.lapi.tls != null) [
            "lapi-tls-cert:${cfg.lapi.tls.certFile}"
            "lapi-tls-key:${cfg.lapi.tls.keyFile}"
          ];
        UMask = "0077";

        # Only what nftables needs; inherited by an `nft` child (ambient), never more.
        AmbientCapabilities = optional enforces "CAP_NET_ADMIN";
        CapabilityBoundingSet = if enforces then [ "CAP_NET_ADMIN" ] else [ "" ];
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
        ]
        ++ optional enforces "AF_NETLINK";
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };

  meta.maintainers = [ ];
}
