//! What the webview shows, as typed values shared with TypeScript through the generated
//! bindings (`ui/src/bindings.ts`).

use ember_protocol::ipc::{IpcError, ViewState};
use serde::{Deserialize, Serialize};

/// Everything the window and the tray show, sent whole on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
pub struct AppView {
    pub service: ServiceStatus,
    /// The service's state; present only while connected, so nothing stale is shown.
    pub state: Option<ViewState>,
    /// The portal's sign-in page is open in the browser and the app waits for its link.
    pub waiting_for_browser: bool,
}

impl AppView {
    pub fn connecting() -> Self {
        Self {
            service: ServiceStatus::Connecting,
            state: None,
            waiting_for_browser: false,
        }
    }
}

/// The app's link to the tunnel service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ServiceStatus {
    /// The first attempt has not finished yet.
    Connecting,
    Connected {
        service_version: String,
        /// This user may change the machine-wide settings (portal URL, log level); otherwise
        /// the settings page shows them read-only and says who may.
        may_change_settings: bool,
    },
    /// Not installed, not started, or restarting; the app keeps retrying.
    NotRunning { detail: String },
    /// The socket exists but this user may not use it (not in the `ember` group).
    NotAllowed { detail: String },
    /// App and service speak different protocol versions: one of them needs an update.
    Incompatible { detail: String },
}

/// Pages of the main window that the tray can open directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Page {
    Resources,
    Account,
    Settings,
    Diagnostics,
}

/// Why a command failed, for the webview to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AppError {
    #[error("the tunnel service is not reachable: {detail}")]
    ServiceUnavailable { detail: String },
    #[error("{error}")]
    Service { error: IpcError },
    #[error("cannot open the browser: {detail}")]
    Browser { detail: String },
    /// Writing a file on this computer failed (preferences, log bundle).
    #[error("{detail}")]
    Local { detail: String },
}
