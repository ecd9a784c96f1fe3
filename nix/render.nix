# Module options -> the daemon's JSON configuration, as a pure function.
#
# It uses builtins only (no nixpkgs lib), so that it evaluates anywhere:
#   nix-instantiate --eval --strict --json --expr 'import ./nix/render.nix { acquisitions.sshd.enable = true; }'
# The NixOS module (modules/garrison.nix) calls it with its option values; the offline test
# (tests/nix_module.rs) calls it with plain attribute sets and runs `garrison check` on the
# result. Every argument is optional and shaped like the module's options of the same name.
{
  # services.garrison.settings: the daemon's own kebab-case keys (freeform).
  settings ? { },
  # services.garrison.collections: extra collections.
  collections ? [ ],
  # services.garrison.acquisitions.{sshd,nginx}.
  acquisitions ? { },
  # services.garrison.whitelist: addresses and ranges never banned.
  whitelist ? [ ],
  # services.garrison.enforcement.nftables.enable.
  enforcement ? { },
  # services.garrison.lapi: { listen, tls = null | { certFile, keyFile } }. Like the
  # bouncers' keys, the TLS files reach the daemon as systemd credentials.
  lapi ? { },
  # services.garrison.bouncers: name -> { keyFile }. Only the names are used here: the key
  # files reach the daemon as systemd credentials, never through the configuration.
  bouncers ? { },
  # services.garrison.blocklists: name -> { url | file, format, type, duration, refresh }.
  blocklists ? { },
  # Where systemd puts the unit's credentials ($CREDENTIALS_DIRECTORY).
  credentialsDirectory ? "/run/credentials/garrison.service",
}:
let
  inherit (builtins)
    attrNames
    concatLists
    elem
    filter
    foldl'
    isAttrs
    isList
    mapAttrs
    ;

  toList = x: if isList x then x else [ x ];
  unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  optional = cond: x: if cond then [ x ] else [ ];

  # `null` means "the daemon's default" everywhere in the schema: leave such keys out, so
  # the rendered file only says what was chosen.
  stripNulls =
    v:
    if isAttrs v then
      mapAttrs (_: stripNulls) (removeAttrs v (filter (n: v.${n} == null) (attrNames v)))
    else if isList v then
      map stripNulls v
    else
      v;

  base = stripNulls settings;
  section = name: base.${name} or { };

  sshd = {
    enable = false;
    journalMatches = [
      "_SYSTEMD_UNIT=sshd.service"
      "SYSLOG_IDENTIFIER=sshd-session"
    ];
  } // (acquisitions.sshd or { });
  nginx = {
    enable = false;
    files = [ "/var/log/nginx/*access.log" ];
    journalMatches = [ ];
  } // (acquisitions.nginx or { });

  shortcutAcquisitions =
    optional sshd.enable {
      type = "syslog";
      name = "sshd";
      journald = sshd.journalMatches;
    }
    ++ optional (nginx.enable && nginx.files != [ ]) {
      type = "nginx";
      name = "nginx";
      files = nginx.files;
    }
    # nginx's error log goes to stderr on NixOS by default: the journal, as program `nginx`.
    ++ optional (nginx.enable && nginx.journalMatches != [ ]) {
      type = "syslog";
      name = "nginx-journal";
      journald = nginx.journalMatches;
    };

  shortcutCollections =
    optional sshd.enable "linux"
    ++ optional sshd.enable "sshd"
    ++ optional nginx.enable "linux"
    ++ optional nginx.enable "nginx";

  renderBlocklist = name: b: stripNulls ({ inherit name; } // removeAttrs b [ "_module" ]);

  tls = lapi.tls or null;
in
base
// {
  acquisitions = shortcutAcquisitions ++ toList (base.acquisitions or [ ]);
  collections = unique (shortcutCollections ++ collections ++ toList (base.collections or [ ]));
  whitelists = section "whitelists" // {
    cidrs = unique (whitelist ++ toList ((section "whitelists").cidrs or [ ]));
  };
  enforcement = section "enforcement" // {
    enable = (enforcement.nftables or { }).enable or true;
  };
  lapi = section "lapi" // {
    listen = lapi.listen or "127.0.0.1:8080";
    bouncer-key-files =
      ((section "lapi").bouncer-key-files or { })
      // mapAttrs (name: _: "${credentialsDirectory}/${name}") bouncers;
  }
  // (
    if tls == null then
      { }
    else
      {
        tls = {
          cert = "${credentialsDirectory}/lapi-tls-cert";
          key = "${credentialsDirectory}/lapi-tls-key";
        };
      }
  );
  blocklists =
    map (name: renderBlocklist name blocklists.${name}) (attrNames blocklists)
    ++ toList (base.blocklists or [ ]);
}
