//! The last Test Connection of each system, as this process saw it: the overview lists the systems whose last
//! check failed. Kept in memory (a check is a moment's answer, not a record): after a restart, or on another
//! replica, a system shows no check until it is tested again there.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::systems::ConnectionCheck;

/// A system's last Test Connection.
#[derive(Clone, Debug, PartialEq)]
pub struct LastCheck {
    /// Whether it succeeded.
    pub ok: bool,
    /// The connector's message.
    pub message: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

fn checks() -> MutexGuard<'static, HashMap<String, LastCheck>> {
    static CHECKS: OnceLock<Mutex<HashMap<String, LastCheck>>> = OnceLock::new();
    CHECKS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Records the outcome of a system's Test Connection.
pub fn record(system_id: &str, check: &ConnectionCheck) {
    checks().insert(
        system_id.to_string(),
        LastCheck {
            ok: check.ok,
            message: check.message.clone(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        },
    );
}

/// The last Test Connection of a system, if this process ran one.
pub fn last(system_id: &str) -> Option<LastCheck> {
    checks().get(system_id).cloned()
}

/// Forgets a deleted system's check.
pub fn forget(system_id: &str) {
    checks().remove(system_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_check_wins_and_goes_with_its_system() {
        let id = "checks-test-system";
        assert_eq!(last(id), None);
        record(
            id,
            &ConnectionCheck {
                ok: false,
                message: "refused".into(),
            },
        );
        assert_eq!(
            last(id).map(|c| (c.ok, c.message)),
            Some((false, "refused".to_string()))
        );
        record(
            id,
            &ConnectionCheck {
                ok: true,
                message: "fine".into(),
            },
        );
        assert!(last(id).is_some_and(|c| c.ok));
        forget(id);
        assert_eq!(last(id), None);
    }
}
