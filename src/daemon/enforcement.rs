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
        origin: index.strings.get(d.origin).to_string(),
        reason: index.strings.get(d.scenario).to_string(),
    })
}

/// Every active ban in the store.
pub fn snapshot(store: &Store) -> Vec<Ban> {
    let index = store.read();
    let now = now_millis();
    index
        .active(now)
        .filter_map(|d| ban_of(d, &index))
        .collect()
}

/// Starts the enforcer on the store's active bans and subscribes it to the store's changes.
pub fn start(store: &Store, cfg: EnforcerConfig) -> std::io::Result<EnforcerHandle> {
    let for_snapshot = store.clone();
    let handle = crate::enforce::spawn(cfg, Arc::new(move || snapshot(&for_snapshot)))?;
    let sender = handle.sender();
    store.subscribe(Box::new(move |change, index| match change {
        Change::Added(d) => {
            if let Some(ban) = ban_of(d, index) {
                sender.add(ban);
            }
        }
        Change::Expired(d) => {
            if ban_of(d, index).is_some()
                && let Some(net) = d.target.net()
            {
                sender.remove(net);
            }
        }
    }));
    Ok(handle)
}
