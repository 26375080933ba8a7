//! The tray icon and its menu. [`TrayView`] is derived from the [`AppView`] by a pure function;
//! the icon and menu are only touched when that derived value changes, so state updates that
//! do not concern the tray cause no flicker.

use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

use crate::view::{AppView, ServiceStatus};
use ember_protocol::ipc::{ResourceState, SessionState};

pub const TRAY_ID: &str = "ember";
pub const MENU_SIGN_IN: &str = "sign_in";
pub const MENU_OPEN: &str = "open";
pub const MENU_SETTINGS: &str = "settings";
pub const MENU_QUIT: &str = "quit";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIconKind {
    ServiceUnreachable,
    SignedOut,
    Connecting,
    SignedIn,
    /// Signed in, but a resource is broken or the portal is reconnecting.
    Degraded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub icon: TrayIconKind,
    /// The first, disabled menu line; also the tooltip.
    pub status_line: String,
    pub can_sign_in: bool,
}

pub fn tray_view(view: &AppView) -> TrayView {
    let unreachable = |status_line: &str| TrayView {
        icon: TrayIconKind::ServiceUnreachable,
        status_line: status_line.to_owned(),
        can_sign_in: false,
    };
    match (&view.service, &view.state) {
        (ServiceStatus::Connecting, _) => unreachable("Connecting to the tunnel service…"),
        (ServiceStatus::NotRunning { .. }, _) => unreachable("Tunnel service is not running"),
        (ServiceStatus::NotAllowed { .. }, _) => {
            unreachable("No permission to use the tunnel service")
        }
        (ServiceStatus::Incompatible { .. }, _) => {
            unreachable("Update Ember: app and service differ")
        }
        (ServiceStatus::Connected { .. }, None) => unreachable("Connecting to the tunnel service…"),
        (ServiceStatus::Connected { .. }, Some(state)) => match &state.session {
            SessionState::SignedOut { .. } => TrayView {
                icon: TrayIconKind::SignedOut,
                status_line: "Signed out".into(),
                can_sign_in: true,
            },
            SessionState::ConnectingToPortal => TrayView {
                icon: TrayIconKind::Connecting,
                status_line: "Connecting to the portal…".into(),
                can_sign_in: false,
            },
            SessionState::PortalReconnecting { .. } => TrayView {
                icon: TrayIconKind::Degraded,
                status_line: "Reconnecting to the portal…".into(),
                can_sign_in: false,
            },
            SessionState::SignedIn { actor, .. } => {
                let broken = state
                    .resources
                    .iter()
                    .any(|r| r.state == ResourceState::Broken);
                TrayView {
                    icon: if broken {
                        TrayIconKind::Degraded
                    } else {
                        TrayIconKind::SignedIn
                    },
                    status_line: format!("Signed in as {actor}"),
                    can_sign_in: false,
                }
            }
        },
    }
}

fn icon(kind: TrayIconKind) -> tauri::Result<Image<'static>> {
    let png: &'static [u8] = match kind {
        TrayIconKind::ServiceUnreachable => include_bytes!("../icons/tray-unreachable.png"),
        TrayIconKind::SignedOut => include_bytes!("../icons/tray-signed-out.png"),
        TrayIconKind::Connecting => include_bytes!("../icons/tray-connecting.png"),
        TrayIconKind::SignedIn => include_bytes!("../icons/tray-signed-in.png"),
        TrayIconKind::Degraded => include_bytes!("../icons/tray-degraded.png"),
    };
    Image::from_bytes(png)
}

fn menu<R: Runtime>(app: &AppHandle<R>, tray: &TrayView) -> tauri::Result<Menu<R>> {
    Menu::with_items(
        app,
        &[
            &MenuItem::with_id(app, "status", &tray.status_line, false, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(
                app,
                MENU_SIGN_IN,
                "Sign in…",
                tray.can_sign_in,
                None::<&str>,
            )?,
            &MenuItem::with_id(app, MENU_OPEN, "Open Ember", true, None::<&str>)?,
            &MenuItem::with_id(app, MENU_SETTINGS, "Settings", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, MENU_QUIT, "Quit Ember", true, None::<&str>)?,
        ],
    )
}

/// Creates the tray icon showing `tray`.
pub fn create<R: Runtime>(app: &AppHandle<R>, tray: &TrayView) -> tauri::Result<TrayIcon<R>> {
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(tray.icon)?)
        .tooltip(&tray.status_line)
        .menu(&menu(app, tray)?)
        .build(app)
}

/// Brings the existing tray icon up to date.
pub fn update<R: Runtime>(app: &AppHandle<R>, tray: &TrayView) -> tauri::Result<()> {
    let Some(icon_handle) = app.tray_by_id(TRAY_ID) else {
        return Ok(());
    };
    icon_handle.set_icon(Some(icon(tray.icon)?))?;
    icon_handle.set_tooltip(Some(&tray.status_line))?;
    icon_handle.set_menu(Some(menu(app, tray)?))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_protocol::ipc::{ServiceSettings, ViewState};

    fn connected(session: SessionState) -> AppView {
        let mut state = ViewState::signed_out(ServiceSettings {
            portal_url: "http://127.0.0.1:8080".into(),
            log_filter: "info".into(),
        });
        state.session = session;
        AppView {
            service: ServiceStatus::Connected {
                service_version: "0.1.0".into(),
            },
            state: Some(state),
        }
    }

    #[test]
    fn service_not_running_shows_the_unreachable_icon_and_no_sign_in() {
        let tray = tray_view(&AppView {
            service: ServiceStatus::NotRunning {
                detail: "connection refused".into(),
            },
            state: None,
        });
        assert_eq!(tray.icon, TrayIconKind::ServiceUnreachable);
        assert_eq!(tray.status_line, "Tunnel service is not running");
        assert!(!tray.can_sign_in);
    }

    #[test]
    fn signed_out_offers_sign_in() {
        let tray = tray_view(&connected(SessionState::SignedOut { reason: None }));
        assert_eq!(tray.icon, TrayIconKind::SignedOut);
        assert!(tray.can_sign_in);
    }

    #[test]
    fn signed_in_names_the_user_and_portal_trouble_degrades_the_icon() {
        let tray = tray_view(&connected(SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada".into(),
        }));
        assert_eq!(tray.icon, TrayIconKind::SignedIn);
        assert_eq!(tray.status_line, "Signed in as Ada");
        let tray = tray_view(&connected(SessionState::PortalReconnecting {
            reason: "reset".into(),
        }));
        assert_eq!(tray.icon, TrayIconKind::Degraded);
    }
}
