//! The account connection state machine.
//!
//! ```text
//! inactive → connecting → qr_ready | pairing_code_ready → active
//! active → disconnected | reconnecting → connecting …
//! any → logged_out | error ; logged_out | error | disconnected → connecting (new attempt)
//! ```
//! Every accepted transition is written to `account_activity` in the same transaction as the
//! state change (see [`crate::accounts::transition`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountState {
    Inactive,
    Connecting,
    QrReady,
    PairingCodeReady,
    Active,
    Disconnected,
    Reconnecting,
    LoggedOut,
    Error,
}

impl AccountState {
    pub const ALL: [Self; 9] = [
        Self::Inactive,
        Self::Connecting,
        Self::QrReady,
        Self::PairingCodeReady,
        Self::Active,
        Self::Disconnected,
        Self::Reconnecting,
        Self::LoggedOut,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Connecting => "connecting",
            Self::QrReady => "qr_ready",
            Self::PairingCodeReady => "pairing_code_ready",
            Self::Active => "active",
            Self::Disconnected => "disconnected",
            Self::Reconnecting => "reconnecting",
            Self::LoggedOut => "logged_out",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether `self → to` is a legal transition.
    pub fn can_become(self, to: Self) -> bool {
        use AccountState::*;
        if matches!(to, LoggedOut | Error) {
            return self != to;
        }
        matches!(
            (self, to),
            (Inactive | Disconnected | LoggedOut | Error | Reconnecting, Connecting)
                // The first attempt can fail too (no network, a proxy that refuses): the client
                // retries, and the reason is worth showing.
                | (Connecting, QrReady | PairingCodeReady | Active | Disconnected | Reconnecting)
                // QR codes rotate and a pairing attempt can fall back to QR.
                | (QrReady, QrReady | PairingCodeReady | Active | Disconnected)
                | (PairingCodeReady, PairingCodeReady | QrReady | Active | Disconnected)
                | (Active, Disconnected | Reconnecting)
                // A retry that reaches WhatsApp for an account not linked yet shows a code.
                | (Reconnecting, Active | Disconnected | QrReady | PairingCodeReady)
                | (Disconnected, Reconnecting | Inactive)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::AccountState::*;
    use super::*;

    #[test]
    fn happy_path_is_legal() {
        let path = [Inactive, Connecting, QrReady, Active, Reconnecting, Active, Disconnected, Connecting];
        for w in path.windows(2) {
            assert!(w[0].can_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
        assert!(PairingCodeReady.can_become(Active));
        assert!(Active.can_become(LoggedOut));
        // A first attempt that fails is retried, and the retry may show a QR.
        let retried = [Inactive, Connecting, Reconnecting, QrReady, Active];
        for w in retried.windows(2) {
            assert!(w[0].can_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn shortcuts_are_illegal() {
        assert!(!Inactive.can_become(Active));
        assert!(!Inactive.can_become(QrReady));
        assert!(!LoggedOut.can_become(Active));
        assert!(!Active.can_become(QrReady));
        assert!(!LoggedOut.can_become(LoggedOut));
    }

    #[test]
    fn names_round_trip() {
        for s in AccountState::ALL {
            assert_eq!(AccountState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
