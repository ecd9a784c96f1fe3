//! `garrison run`: the long-running service.
//!
//! Threads: the sources (acquire), one engine thread (parse → detect → decide), the store's
//! writer, and a tokio runtime for the HTTP servers and signals. Configuration errors at
//! start exit 1 with the diagnostics; on SIGHUP a failed recompilation is logged and the
//! running rules stay in force.

mod checkpoint;
pub mod enforcement;
mod logging;
mod worker;

use crate::acquire::{Sources, describe};
use crate::compile::{Ruleset, compile_path};
use crate::config::model::LogFormat;
use crate::metrics::Metrics;
use crate::store::Store;
use ipnet::IpNet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use worker::{Control, Worker};

/// Options of `garrison run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file; the embedded default when absent.
    #[arg(long, short, env = "GARRISON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr (overrides `daemon.log-format`); the journal gets fields.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How long expired decisions stay (bouncers see them in `deleted`; escalation counts them).
const DECISION_RETENTION: Duration = Duration::from_secs(7 * 86400);
/// How long alerts without a retained decision stay.
const ALERT_RETENTION: Duration = Duration::from_secs(7 * 86400);
/// Batches queued between the sources and the engine.
const BATCH_QUEUE: usize = 16;
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Ranges no decision may cover: the whitelists and the admin CIDRs.
fn protected_ranges(rs: &Ruleset) -> Vec<(IpNet, Arc<str>)> {
    let mut out: Vec<(IpNet, Arc<str>)> = rs
        .whitelist
        .cidrs
        .iter()
        .map(|(c, reason)| (c.0, reason.clone()))
        .collect();
    out.extend(
        rs.config
            .enforcement
            .admin_cidrs
            .0
            .iter()
            .map(|c| (c.0, Arc::from("admin CIDR"))),
    );
    out
}

/// Runs `garrison run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let compiled = match compile_path(args.config.as_deref()) {
        Ok(c) => c,
        Err(diags) => {
            eprint!("{diags}");
            eprintln!(
                "\n{} error{} found; garrison did not start.",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            return ExitCode::FAILURE;
        }
    };
    let rs = compiled.ruleset;
    let format = match args.log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => rs.config.daemon.log_format,
    };
    logging::init(rs.config.daemon.log_level, format);
    match Daemon::start(rs, args.config.clone()) {
        Ok(d) => d.serve(),
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("garrison: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The running parts.
struct Daemon {
    config_path: Option<PathBuf>,
    ruleset: Arc<std::sync::RwLock<Arc<Ruleset>>>,
    store: Store,
    metrics: Arc<Metrics>,
    sources: Option<Sources>,
    batches: Option<crossbeam_channel::Sender<crate::acquire::Batch>>,
    control: crossbeam_channel::Sender<Control>,
    worker: Option<std::thread::JoinHandle<()>>,
    enforcer: Option<crate::enforce::EnforcerHandle>,
    api: Option<crate::api::ApiState>,
    lists: crate::blocklists::BlocklistsHandle,
    /// The Central API thread, when `central.enable`.
    capi: Option<crate::capi::CapiHandle>,
    /// Where the engine sends signals; connected to `capi` when it shares them.
    signals: crate::capi::SignalSink,
    state_dir: PathBuf,
    /// Stopped (dropped) after the store's last writes.
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// Starts the Central API thread when `central.enable` (otherwise nothing goes out).
fn start_capi(
    rs: &Ruleset,
    store: &Store,
    state_dir: &std::path::Path,
) -> Option<crate::capi::CapiHandle> {
    let central = &rs.config.central;
    if !central.enable {
        return None;
    }
    let scenarios = rs.scenarios.iter().map(|s| s.name.to_string()).collect();
    match crate::capi::spawn(central, scenarios, store.clone(), state_dir) {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Central API thread");
            None
        }
    }
}

impl Daemon {
    fn start(rs: Arc<Ruleset>, config_path: Option<PathBuf>) -> Result<Daemon, String> {
        let cfg = &rs.config;
        let state_dir = PathBuf::from(&cfg.daemon.state_dir);
        let store = Store::open(&state_dir).map_err(|e| e.to_string())?;
        store.set_protected(protected_ranges(&rs));
        let checkpointer = checkpoint::spawn(store.path())
            .map_err(|e| format!("cannot start the checkpoint thread: {e}"))?;
        let metrics = Metrics::new();
        metrics.register_active_decisions(store.clone());
        // The enforcer subscribes before anything can add a decision, so its snapshot and
        // the changes after it cover every decision.
        let enforcer = if cfg.enforcement.enable {
            let ecfg = crate::enforce::EnforcerConfig {
                nftables: cfg.enforcement.nftables.clone(),
                never: protected_ranges(&rs).into_iter().map(|(n, _)| n).collect(),
                dry_run: cfg.enforcement.dry_run,
            };
            Some(enforcement::start(&store, ecfg).map_err(|e| {
                format!(
                    "cannot start nftables enforcement: {e} (garrison needs CAP_NET_ADMIN; set `enforcement enable=#false` to run without)"
                )
            })?)
        } else {
            tracing::warn!("enforcement is disabled: decisions are only served to bouncers");
            None
        };
        if let Some(e) = &enforcer {
            let m = metrics.clone();
            e.on_applied(move |d| m.enforcement_latency.observe(d.as_secs_f64()));
        }
        // A short queue: when the engine falls behind, sources wait (the lines stay in the
        // files and the journal) instead of piling up in memory.
        let (batch_tx, batch_rx) = crossbeam_channel::bounded(BATCH_QUEUE);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let ruleset = Arc::new(std::sync::RwLock::new(rs.clone()));
        // Always served: with `lapi enable=#false` only the Unix socket (for the CLI) is.
        let api = Some(
            crate::api::ApiState::new(store.clone(), ruleset.clone())
                .map_err(|e| format!("cannot start the Local API: {e}"))?,
        );
        // After `set_protected`: the first refresh runs at once, and whitelists win.
        let config_dir = config_path
            .as_deref()
            .and_then(std::path::Path::parent)
            .map(std::path::Path::to_path_buf);
        let lists = crate::blocklists::spawn(
            cfg.blocklists.clone(),
            store.clone(),
            state_dir.clone(),
            config_dir,
        )
        .map_err(|e| format!("cannot start the blocklist thread: {e}"))?;
        if let Some(api) = &api {
            api.set_blocklists(Some(lists.clone()));
            api.set_metrics(metrics.clone());
        }
        let upstream = match &cfg.lapi.url {
            Some(url) => Some(
                crate::api::upstream::spawn(url, &state_dir, store.clone())
                    .map_err(|e| format!("cannot start the upstream agent: {e}"))?,
            ),
            None => None,
        };
        // After `set_protected`, like the blocklists: whitelists win over the community list.
        let capi = start_capi(&rs, &store, &state_dir);
        let signals = crate::capi::SignalSink::default();
        signals.connect(capi.clone());
        if let Some(api) = &api {
            api.set_central(capi.clone());
            // Read through the API state, which follows the Central API thread across
            // reloads.
            let api = api.clone();
            metrics.register_lists(move || list_gauges(&api));
        }
        // The worker is built on its thread: its engine's buckets share event samples with
        // plain reference counts, so it never moves between threads.
        let (worker_rs, worker_store, worker_metrics, worker_signals) =
            (rs.clone(), store.clone(), metrics.clone(), signals.clone());
        let worker = std::thread::Builder::new()
            .name("garrison-engine".into())
            .spawn(move || {
                Worker::new(worker_rs, worker_store, worker_metrics, upstream)
                    .with_signals(worker_signals)
                    .run(batch_rx, control_rx)
            })
            .map_err(|e| format!("cannot start the engine thread: {e}"))?;
        let sources = Sources::start(&cfg.acquisitions, &store, &batch_tx)
            .map_err(|e| format!("cannot start the log sources: {e}"))?;
        tracing::info!(
            config = %rs.config_name,
            collections = %rs.collections.join(", "),
            parsers = rs.stages.iter().map(Vec::len).sum::<usize>(),
            scenarios = rs.scenarios.len(),
            decisions = store.read().active(crate::store::now_millis()).count(),
            db = %store.path().display(),
            "garrison starting"
        );
        for acq in &cfg.acquisitions {
            tracing::info!("watching {}", describe(acq));
        }
        if cfg.acquisitions.is_empty() {
            tracing::warn!("no acquisitions configured: nothing is watched");
        }
        Ok(Daemon {
            config_path,
            ruleset,
            api,
            lists,
            capi,
            signals,
            state_dir,
            checkpointer: Some(checkpointer),
            store,
            metrics,
            sources: Some(sources),
            batches: Some(batch_tx),
            control: control_tx,
            worker: Some(worker),
            enforcer,
        })
    }

    fn current(&self) -> Arc<Ruleset> {
        self.ruleset
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Runs the servers and waits for signals; returns the exit code.
    fn serve(mut self) -> ExitCode {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("garrison-io")
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the async runtime");
                return ExitCode::FAILURE;
            }
        };
        let code = rt.block_on(self.serve_async());
        self.shutdown();
        code
    }

    async fn serve_async(&mut self) -> ExitCode {
        use tokio::signal::unix::{SignalKind, signal};
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let cfg = self.current().config.clone();
        if cfg.metrics.enable {
            let metrics = self.metrics.clone();
            let listen = cfg.metrics.listen.clone();
            let shutdown = stopped();
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(&listen, metrics, shutdown).await {
                    tracing::error!(%listen, error = %e, "metrics endpoint failed");
                }
            });
        }
        let mut api_task = match &self.api {
            Some(state) => {
                let serve = crate::api::serve(
                    cfg.lapi.clone(),
                    self.state_dir.clone(),
                    state.clone(),
                    stopped(),
                );
                Some(tokio::spawn(serve))
            }
            None => None,
        };
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        // READY once the kernel holds every active ban.
        if let Some(e) = &self.enforcer {
            let synced = tokio::task::block_in_place(|| e.wait_synced(Duration::from_secs(30)));
            if synced {
                let s = e.stats();
                tracing::info!(
                    table = %cfg.enforcement.nftables.table,
                    ipv4 = s.ipv4,
                    ipv6 = s.ipv6,
                    ranges = s.ipv4_ranges + s.ipv6_ranges,
                    "enforcing in nftables"
                );
            } else {
                tracing::error!(
                    "the first nftables sync did not finish within 30 s; continuing, it is retried"
                );
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!("garrison ready");
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let mut code = ExitCode::SUCCESS;
        loop {
            tokio::select! {
                // The Local API only returns early on failure (a port in use, bad TLS files).
                r = async { api_task.as_mut().expect("guarded").await }, if api_task.is_some() => {
                    api_task = None;
                    match r {
                        Ok(Err(e)) => tracing::error!("Local API: {e}"),
                        Err(e) => tracing::error!("Local API: {e}"),
                        Ok(Ok(())) => tracing::error!("Local API stopped"),
                    }
                    code = ExitCode::FAILURE;
                    break;
                }
                _ = hup.recv() => self.reload().await,
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = prune.tick() => {
                    let store = self.store.clone();
                    let n = tokio::task::spawn_blocking(move || store.prune(DECISION_RETENTION, ALERT_RETENTION)).await.unwrap_or(0);
                    if n > 0 {
                        tracing::info!(pruned = n, "old decisions pruned");
                    }
                }
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!("garrison stopping");
        let _ = stop_tx.send(true);
        if let Some(t) = api_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        code
    }

    /// SIGHUP: recompile; swap in on success, keep the running rules on failure.
    async fn reload(&mut self) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        tracing::info!("reloading configuration and rules");
        let path = self.config_path.clone();
        let compiled = tokio::task::spawn_blocking(move || compile_path(path.as_deref())).await;
        match compiled {
            Ok(Ok(c)) => {
                let rs = c.ruleset;
                let old = self.current();
                let acquisitions_changed = serde_json::to_value(&old.config.acquisitions).ok()
                    != serde_json::to_value(&rs.config.acquisitions).ok();
                self.store.set_protected(protected_ranges(&rs));
                // Newly whitelisted addresses are unbanned at once.
                let store = self.store.clone();
                let freed = store.expire_where(|d, _| {
                    d.target
                        .net()
                        .is_some_and(|_| store.protected_reason(&d.target).is_some())
                });
                if !freed.is_empty() {
                    tracing::info!(decisions = ?freed, "decisions on now-protected addresses deleted");
                }
                if serde_json::to_value(&old.config.enforcement).ok()
                    != serde_json::to_value(&rs.config.enforcement).ok()
                {
                    tracing::warn!(
                        "enforcement settings changed: they take effect at the next restart"
                    );
                }
                *self
                    .ruleset
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = rs.clone();
                let _ = self.control.send(Control::Reload(rs.clone()));
                self.lists.reconfigure(rs.config.blocklists.clone());
                self.reconfigure_capi(&old, &rs);
                if let Some(api) = &self.api
                    && let Err(e) = api.reload(&rs.config.lapi)
                {
                    tracing::error!("Local API settings not reloaded: {e}");
                }
                if acquisitions_changed
                    && let (Some(sources), Some(tx)) = (self.sources.take(), self.batches.clone())
                {
                    tokio::task::spawn_blocking(move || sources.stop())
                        .await
                        .ok();
                    match Sources::start(&rs.config.acquisitions, &self.store, &tx) {
                        Ok(s) => self.sources = Some(s),
                        Err(e) => tracing::error!(error = %e, "cannot restart the log sources"),
                    }
                    for acq in &rs.config.acquisitions {
                        tracing::info!("watching {}", describe(acq));
                    }
                }
                tracing::info!("reload done");
            }
            Ok(Err(diags)) => {
                for d in &diags.0 {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    errors = diags.len(),
                    "reload failed; the running configuration and rules stay in force"
                );
            }
            Err(e) => tracing::error!(error = %e, "reload failed"),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    }

    /// Restarts the Central API thread when its settings or the scenarios changed (the
    /// login carries the scenarios), stops it when disabled.
    fn reconfigure_capi(&mut self, old: &Ruleset, new: &Ruleset) {
        let names = |rs: &Ruleset| -> Vec<String> {
            rs.scenarios.iter().map(|s| s.name.to_string()).collect()
        };
        let same = serde_json::to_value(&old.config.central).ok()
            == serde_json::to_value(&new.config.central).ok()
            && names(old) == names(new);
        if same && self.capi.is_some() == new.config.central.enable {
            return;
        }
        if let Some(h) = self.capi.take() {
            h.stop();
            // The new thread takes over the old one's decisions from the store: the old
            // one must be done applying its last pull.
            let stopped = tokio::task::block_in_place(|| h.wait_stopped(Duration::from_secs(10)));
            if !stopped {
                tracing::warn!("the previous Central API thread is still busy; starting anyway");
            }
        }
        self.capi = start_capi(new, &self.store, &self.state_dir);
        self.signals.connect(self.capi.clone());
        if let Some(api) = &self.api {
            api.set_central(self.capi.clone());
        }
        if !new.config.central.enable && old.config.central.enable {
            tracing::info!("Central API disabled");
        }
    }

    fn shutdown(&mut self) {
        self.signals.connect(None);
        if let Some(h) = self.capi.take() {
            h.stop();
        }
        if let Some(s) = self.sources.take() {
            s.stop();
        }
        // Closing the channel lets the engine finish what was read, then exit.
        self.batches = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        self.store.flush();
        self.checkpointer = None;
        if let Some(e) = self.enforcer.take() {
            e.shutdown();
        }
    }
}

/// Every blocklist's state for the metrics: the configured lists, then the Central API's
/// community list and the lists it links to.
fn list_gauges(api: &crate::api::ApiState) -> Vec<crate::metrics::ListGauge> {
    use crate::metrics::ListGauge;
    let mut out: Vec<ListGauge> = api
        .blocklists()
        .map(|h| h.status())
        .unwrap_or_default()
        .into_iter()
        .map(|l| ListGauge {
            list: l.name,
            source: "config",
            entries: l.size as i64,
            last_success: l.last_success,
            failing: l.last_error.is_some(),
        })
        .collect();
    if let Some(c) = api.central().map(|h| h.status()) {
        out.push(ListGauge {
            list: "community".into(),
            source: "central",
            entries: c.community_size as i64,
            last_success: c.last_pull,
            failing: c.last_error.is_some(),
        });
        out.extend(c.lists.into_iter().map(|l| ListGauge {
            list: l.name,
            source: "central",
            entries: l.size as i64,
            // Linked lists show it only while their last attempt stands successful.
            last_success: l.last_success.filter(|_| l.last_error.is_none()),
            failing: l.last_error.is_some(),
        }));
    }
    out
}
