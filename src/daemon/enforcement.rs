//! Wiring the store to the nftables enforcer: every active `ban` on an address or range is
//! a kernel element; the store's changes become the enforcer's adds and removes.

use crate::enforce::{Ban, EnforcerConfig, EnforcerHandle};
use crate::store::{Change, Decision, DecisionIndex, Store, now_millis};
use std::sync::Arc;

/// The decision type enforced in the kernel; other types (`captcha`) are for bouncers.
const KERNEL_TYPE: &str = "ban";

/// The ban a decision asks the kernel for, if it asks for one.
fn ban_of(d: &Decision, index: &DecisionIndex) -> Option<Ban> {
    if d.simulated || &**index.strings.get(d.decision_type) != KERNEL_TYPE {
        return None;
    }
    Some(Ban {
        id: d.id,
        net: d.target.net()?,
        expires: jiff::Timestamp::from_millisecond(d.until).ok()?,
        origin: Arc::clone(index.strings.get(d.origin)),
        reason: Arc::clone(index.strings.get(d.scenario)),
    })
}

/// Bans read from the store per read lock while streaming the snapshot: small enough that
/// writers (and the Local API's readers queued behind them) never wait long, large enough
/// that the lock is taken a few dozen times for a million bans.
const SNAPSHOT_CHUNK: usize = 32_768;

/// Hands every active ban in the store to `sink`, in id order, a chunk at a time: the read
/// lock is released between chunks (the enforcer commits each to the kernel meanwhile).
/// A decision made or deleted during the walk also reaches the enforcer as a change, so
/// the result converges whatever the interleaving.
pub fn snapshot_into(store: &Store, sink: &mut dyn FnMut(Ban)) {
    let mut chunk: Vec<Ban> = Vec::with_capacity(SNAPSHOT_CHUNK);
    let mut after = 0;
    loop {
        let mut done = true;
        {
            let index = store.read();
            let now = now_millis();
            for d in index.after_id(after) {
                after = d.id;
                if d.is_active(now)
                    && let Some(ban) = ban_of(d, &index)
                {
                    chunk.push(ban);
                    if chunk.len() == SNAPSHOT_CHUNK {
                        done = false;
                        break;
                    }
                }
            }
        }
        chunk.drain(..).for_each(&mut *sink);
        if done {
            return;
        }
    }
}

/// Starts the enforcer on the store's active bans and subscribes it to the store's changes.
pub fn start(store: &Store, cfg: EnforcerConfig) -> std::io::Result<EnforcerHandle> {
    let for_snapshot = store.clone();
    let handle = crate::enforce::spawn_streaming(
        cfg,
        Arc::new(move |sink: &mut dyn FnMut(Ban)| snapshot_into(&for_snapshot, sink)),
    )?;
    let sender = handle.sender();
    store.subscribe(Box::new(move |change, index| match change {
        Change::Added(d) => {
            if let Some(ban) = ban_of(d, index) {
                sender.add(ban);
            }
        }
        // Only deletions are announced (natural ends are the kernel timeouts' job). The
        // element goes, then comes back if another active decision still bans the target.
        Change::Expired(d) => {
            if ban_of(d, index).is_some()
                && let Some(net) = d.target.net()
            {
                sender.remove(net);
                let now = now_millis();
                // Ties go to the newest decision, as when these came in id order.
                let longest = index
                    .on_target_iter(&d.target)
                    .filter(|o| o.id != d.id && o.is_active(now))
                    .filter_map(|o| ban_of(o, index))
                    .max_by_key(|b| (b.expires, b.id));
                if let Some(ban) = longest {
                    sender.add(ban);
                }
            }
        }
    }));
    Ok(handle)
}
