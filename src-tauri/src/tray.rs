//! The tray icon and its menu. [`TrayView`] is derived from the [`AppView`] by a pure function;
//! the icon and menu are only touched when that derived value changes, so state updates that
//! do not concern the tray cause no flicker.

use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Runtime};

use crate::view::{AppView, ServiceStatus};
use ember_protocol::ipc::{ResourceState, ResourceView, SessionState};

pub const TRAY_ID: &str = "ember";
pub const MENU_SIGN_IN: &str = "sign_in";
pub const MENU_CANCEL_SIGN_IN: &str = "cancel_sign_in";
pub const MENU_SIGN_OUT: &str = "sign_out";
pub const MENU_OPEN: &str = "open";
pub const MENU_SETTINGS: &str = "settings";
pub const MENU_QUIT: &str = "quit";
/// Followed by the resource id: copies that resource's address.
pub const MENU_COPY_PREFIX: &str = "copy:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayIconKind {
    ServiceUnreachable,
    SignedOut,
    Connecting,
    SignedIn,
    /// Signed in, but a resource is broken or the portal is reconnecting.
    Degraded,
}

/// The one session action the menu offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    /// Greyed out: the service is not there.
    SignInUnavailable,
    SignIn,
    CancelSignIn,
    SignOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayResource {
    pub id: String,
    /// "Demo web server — active"
    pub label: String,
    pub address: String,
    pub site: String,
    /// The state with its reason, e.g. "unreachable: all gateways of Home are offline".
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub icon: TrayIconKind,
    /// The first, disabled menu line; also the tooltip.
    pub status_line: String,
    /// "Signed in as Ada (acme)" while signed in.
    pub account_line: Option<String>,
    pub action: SessionAction,
    pub resources: Vec<TrayResource>,
}

pub fn tray_view(view: &AppView) -> TrayView {
    let simple = |icon, status_line: &str, action| TrayView {
        icon,
        status_line: status_line.to_owned(),
        account_line: None,
        action,
        resources: Vec::new(),
    };
    let unreachable = |line: &str| {
        simple(
            TrayIconKind::ServiceUnreachable,
            line,
            SessionAction::SignInUnavailable,
        )
    };
    let state = match (&view.service, &view.state) {
        (ServiceStatus::Connecting, _) => return unreachable("Connecting to the tunnel service…"),
        (ServiceStatus::NotRunning { .. }, _) => {
            return unreachable("Tunnel service is not running");
        }
        (ServiceStatus::NotAllowed { .. }, _) => {
            return unreachable("No permission to use the tunnel service");
        }
        (ServiceStatus::Incompatible { .. }, _) => {
            return unreachable("Update Ember: app and service differ");
        }
        (ServiceStatus::Connected { .. }, None) => {
            return unreachable("Connecting to the tunnel service…");
        }
        (ServiceStatus::Connected { .. }, Some(state)) => state,
    };
    let connecting =
        |line: &str| simple(TrayIconKind::Connecting, line, SessionAction::CancelSignIn);
    match &state.session {
        SessionState::SignedOut { .. } if view.waiting_for_browser => {
            connecting("Waiting for the browser…")
        }
        SessionState::SignedOut { reason } => simple(
            TrayIconKind::SignedOut,
            &match reason {
                Some(reason) => format!("Signed out: {reason}"),
                None => "Signed out".into(),
            },
            SessionAction::SignIn,
        ),
        SessionState::ConnectingToPortal => connecting("Connecting to the portal…"),
        SessionState::RaisingTunnel => connecting("Raising the tunnel…"),
        SessionState::PortalReconnecting { .. } | SessionState::SignedIn { .. } => {
            let reconnecting = matches!(state.session, SessionState::PortalReconnecting { .. });
            let broken = state
                .resources
                .iter()
                .any(|r| r.state == ResourceState::Broken);
            let account_line = match &state.session {
                SessionState::SignedIn { account, actor } => {
                    Some(format!("Signed in as {actor} ({account})"))
                }
                _ => None,
            };
            TrayView {
                icon: if reconnecting || broken {
                    TrayIconKind::Degraded
                } else {
                    TrayIconKind::SignedIn
                },
                status_line: if reconnecting {
                    "Reconnecting to the portal…".into()
                } else if broken {
                    "Signed in; a resource is broken".into()
                } else {
                    "Signed in".into()
                },
                account_line,
                action: SessionAction::SignOut,
                resources: state.resources.iter().map(tray_resource).collect(),
            }
        }
    }
}

fn tray_resource(resource: &ResourceView) -> TrayResource {
    let state = match resource.state {
        ResourceState::Unknown => "not used yet",
        ResourceState::Connecting => "connecting",
        ResourceState::Active => "active",
        ResourceState::Idle => "idle",
        ResourceState::Broken => "broken",
        ResourceState::Unreachable => "unreachable",
    };
    TrayResource {
        id: resource.id.clone(),
        label: format!("{} — {state}", resource.name),
        address: resource.address.clone(),
        site: format!("Site: {}", resource.site),
        status: match &resource.reason {
            Some(reason) => format!("{state}: {reason}"),
            None => state.to_owned(),
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
    let menu = Menu::new(app)?;
    menu.append(&MenuItem::with_id(
        app,
        "status",
        &tray.status_line,
        false,
        None::<&str>,
    )?)?;
    if let Some(account) = &tray.account_line {
        menu.append(&MenuItem::with_id(
            app,
            "account",
            account,
            false,
            None::<&str>,
        )?)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    if !tray.resources.is_empty() {
        for resource in &tray.resources {
            let info = |id: &str, text: &str| {
                MenuItem::with_id(
                    app,
                    format!("{id}:{}", resource.id),
                    text,
                    false,
                    None::<&str>,
                )
            };
            let items: [&dyn IsMenuItem<R>; 4] = [
                &info("address", &resource.address)?,
                &info("site", &resource.site)?,
                &info("state", &resource.status)?,
                &MenuItem::with_id(
                    app,
                    format!("{MENU_COPY_PREFIX}{}", resource.id),
                    "Copy address",
                    true,
                    None::<&str>,
                )?,
            ];
            menu.append(&Submenu::with_items(app, &resource.label, true, &items)?)?;
        }
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    let (id, label, enabled) = match tray.action {
        SessionAction::SignInUnavailable => (MENU_SIGN_IN, "Sign in…", false),
        SessionAction::SignIn => (MENU_SIGN_IN, "Sign in…", true),
        SessionAction::CancelSignIn => (MENU_CANCEL_SIGN_IN, "Cancel sign-in", true),
        SessionAction::SignOut => (MENU_SIGN_OUT, "Sign out", true),
    };
    menu.append(&MenuItem::with_id(app, id, label, enabled, None::<&str>)?)?;
    menu.append(&MenuItem::with_id(
        app,
        MENU_OPEN,
        "Open Ember",
        true,
        None::<&str>,
    )?)?;
    menu.append(&MenuItem::with_id(
        app,
        MENU_SETTINGS,
        "Settings",
        true,
        None::<&str>,
    )?)?;
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&MenuItem::with_id(
        app,
        MENU_QUIT,
        "Quit Ember",
        true,
        None::<&str>,
    )?)?;
    Ok(menu)
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
            waiting_for_browser: false,
        }
    }

    #[test]
    fn service_not_running_shows_the_unreachable_icon_and_no_sign_in() {
        let tray = tray_view(&AppView {
            service: ServiceStatus::NotRunning {
                detail: "connection refused".into(),
            },
            state: None,
            waiting_for_browser: false,
        });
        assert_eq!(tray.icon, TrayIconKind::ServiceUnreachable);
        assert_eq!(tray.status_line, "Tunnel service is not running");
        assert_eq!(tray.action, SessionAction::SignInUnavailable);
    }

    #[test]
    fn signed_out_offers_sign_in_and_says_why_when_the_portal_ended_the_session() {
        let tray = tray_view(&connected(SessionState::SignedOut { reason: None }));
        assert_eq!(tray.icon, TrayIconKind::SignedOut);
        assert_eq!(tray.action, SessionAction::SignIn);
        let tray = tray_view(&connected(SessionState::SignedOut {
            reason: Some("the token was revoked".into()),
        }));
        assert_eq!(tray.status_line, "Signed out: the token was revoked");
    }

    #[test]
    fn the_sign_in_steps_show_in_order_with_a_way_to_cancel() {
        let mut waiting = connected(SessionState::SignedOut { reason: None });
        waiting.waiting_for_browser = true;
        let steps = [
            waiting,
            connected(SessionState::ConnectingToPortal),
            connected(SessionState::RaisingTunnel),
        ];
        let lines: Vec<String> = steps.iter().map(|v| tray_view(v).status_line).collect();
        assert_eq!(
            lines,
            [
                "Waiting for the browser…",
                "Connecting to the portal…",
                "Raising the tunnel…"
            ]
        );
        for step in &steps {
            assert_eq!(tray_view(step).icon, TrayIconKind::Connecting);
            assert_eq!(tray_view(step).action, SessionAction::CancelSignIn);
        }
    }

    #[test]
    fn resources_are_listed_with_address_site_and_state_reason() {
        let mut view = connected(SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada".into(),
        });
        let state = view.state.as_mut().unwrap();
        state.resources.push(ResourceView {
            id: "res_1".into(),
            name: "Wiki".into(),
            address: "wiki.corp.example".into(),
            address_description: None,
            site: "Berlin".into(),
            state: ResourceState::Unreachable,
            reason: Some("all gateways of Berlin are offline".into()),
            path: None,
            rtt_ms: None,
            rx_bytes: 0,
            tx_bytes: 0,
            enabled: None,
        });
        let tray = tray_view(&view);
        assert_eq!(
            tray.account_line.as_deref(),
            Some("Signed in as Ada (acme)")
        );
        assert_eq!(tray.action, SessionAction::SignOut);
        assert_eq!(
            tray.resources,
            [TrayResource {
                id: "res_1".into(),
                label: "Wiki — unreachable".into(),
                address: "wiki.corp.example".into(),
                site: "Site: Berlin".into(),
                status: "unreachable: all gateways of Berlin are offline".into(),
            }]
        );
    }

    #[test]
    fn signed_in_names_the_user_and_portal_trouble_degrades_the_icon() {
        let tray = tray_view(&connected(SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada".into(),
        }));
        assert_eq!(tray.icon, TrayIconKind::SignedIn);
        assert_eq!(tray.status_line, "Signed in");
        let tray = tray_view(&connected(SessionState::PortalReconnecting {
            reason: "reset".into(),
        }));
        assert_eq!(tray.icon, TrayIconKind::Degraded);
    }
}
