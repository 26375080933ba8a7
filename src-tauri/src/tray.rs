//! The tray icon and its menu. [`TrayView`] is derived from the [`AppView`] by a pure function,
//! and [`change`] says what showing a new one takes, so state updates touch only what differs.

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
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
pub const MENU_INTERNET_PREFIX: &str = "internet:";

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
    /// The internet resource's switch, when the user has one.
    pub internet: Option<InternetSwitch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetSwitch {
    pub resource_id: String,
    pub enabled: bool,
}

pub fn tray_view(view: &AppView) -> TrayView {
    let simple = |icon, status_line: &str, action| TrayView {
        icon,
        status_line: status_line.to_owned(),
        account_line: None,
        action,
        resources: Vec::new(),
        internet: None,
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
                internet: state.resources.iter().find_map(|r| {
                    Some(InternetSwitch {
                        resource_id: r.id.clone(),
                        enabled: r.enabled?,
                    })
                }),
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
    Image::from_bytes(if cfg!(target_os = "macos") {
        template_png(kind)
    } else {
        coloured_png(kind)
    })
}

/// Linux and Windows: the states differ by colour.
fn coloured_png(kind: TrayIconKind) -> &'static [u8] {
    match kind {
        TrayIconKind::ServiceUnreachable => include_bytes!("../icons/tray-unreachable.png"),
        TrayIconKind::SignedOut => include_bytes!("../icons/tray-signed-out.png"),
        TrayIconKind::Connecting => include_bytes!("../icons/tray-connecting.png"),
        TrayIconKind::SignedIn => include_bytes!("../icons/tray-signed-in.png"),
        TrayIconKind::Degraded => include_bytes!("../icons/tray-degraded.png"),
    }
}

/// macOS: template images (black, only their alpha counts, tinted by the menu bar for light
/// and dark mode), so the states differ by shape. Drawn by `scripts/tray-template-icons.py`.
fn template_png(kind: TrayIconKind) -> &'static [u8] {
    match kind {
        TrayIconKind::ServiceUnreachable => {
            include_bytes!("../icons/tray-unreachable-template.png")
        }
        TrayIconKind::SignedOut => include_bytes!("../icons/tray-signed-out-template.png"),
        TrayIconKind::Connecting => include_bytes!("../icons/tray-connecting-template.png"),
        TrayIconKind::SignedIn => include_bytes!("../icons/tray-signed-in-template.png"),
        TrayIconKind::Degraded => include_bytes!("../icons/tray-degraded-template.png"),
    }
}

/// The tray as shown: the icon, the view it shows, and handles to the menu items whose text
/// follows the state. A change that keeps the menu's shape (same entries, same resources)
/// only rewrites the texts that differ, so an open menu stays open and does not flicker;
/// only a change of shape (signing in, a resource granted) builds a new menu.
pub struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    shown: TrayView,
    items: MenuItems<R>,
}

impl<R: Runtime> std::fmt::Debug for Tray<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tray")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

struct MenuItems<R: Runtime> {
    status: MenuItem<R>,
    account: Option<MenuItem<R>>,
    resources: Vec<ResourceItems<R>>,
    internet: Option<CheckMenuItem<R>>,
}

struct ResourceItems<R: Runtime> {
    submenu: Submenu<R>,
    address: MenuItem<R>,
    site: MenuItem<R>,
    state: MenuItem<R>,
}

/// What showing `to` after `from` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrayChange {
    pub icon: bool,
    pub menu: MenuChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuChange {
    Nothing,
    Texts,
    Rebuild,
}

/// muda cannot retitle a submenu on Linux (its GTK item holds a box, not a label, so the new
/// text is silently dropped): there a resource whose state shows in its title needs a new menu.
const SUBMENU_TITLES_CHANGE_IN_PLACE: bool = !cfg!(target_os = "linux");

pub fn change(from: &TrayView, to: &TrayView) -> TrayChange {
    let same_shape =
        from.account_line.is_some() == to.account_line.is_some()
            && from.action == to.action
            && from.internet.as_ref().map(|i| &i.resource_id)
                == to.internet.as_ref().map(|i| &i.resource_id)
            && from.resources.len() == to.resources.len()
            && from.resources.iter().zip(&to.resources).all(|(a, b)| {
                a.id == b.id && (SUBMENU_TITLES_CHANGE_IN_PLACE || a.label == b.label)
            });
    let texts_differ = from.status_line != to.status_line
        || from.account_line != to.account_line
        || from.resources != to.resources
        || from.internet != to.internet;
    let menu = match (same_shape, texts_differ) {
        (false, _) => MenuChange::Rebuild,
        (true, true) => MenuChange::Texts,
        (true, false) => MenuChange::Nothing,
    };
    TrayChange {
        icon: from.icon != to.icon,
        menu,
    }
}

impl<R: Runtime> Tray<R> {
    pub fn create(app: &AppHandle<R>, view: &TrayView) -> tauri::Result<Self> {
        let (menu, items) = menu(app, view)?;
        let icon = TrayIconBuilder::with_id(TRAY_ID)
            .icon(icon(view.icon)?)
            .icon_as_template(cfg!(target_os = "macos"))
            .tooltip(&view.status_line)
            .menu(&menu)
            .build(app)?;
        Ok(Self {
            icon,
            shown: view.clone(),
            items,
        })
    }

    pub fn icon(&self) -> &TrayIcon<R> {
        &self.icon
    }

    /// Shows `view`, touching only what differs from what is shown; answers what it took.
    pub fn show(&mut self, app: &AppHandle<R>, view: &TrayView) -> tauri::Result<TrayChange> {
        let change = change(&self.shown, view);
        if change.icon {
            // On macOS the image and its template flag in one step (two would flicker);
            // elsewhere this is `set_icon`.
            self.icon
                .set_icon_with_as_template(Some(icon(view.icon)?), true)?;
        }
        match change.menu {
            MenuChange::Nothing => {}
            MenuChange::Texts => self.items.retext(&self.shown, view)?,
            MenuChange::Rebuild => {
                let (menu, items) = menu(app, view)?;
                self.icon.set_menu(Some(menu))?;
                self.items = items;
            }
        }
        if self.shown.status_line != view.status_line {
            self.icon.set_tooltip(Some(&view.status_line))?;
        }
        self.shown = view.clone();
        Ok(change)
    }
}

impl<R: Runtime> MenuItems<R> {
    /// Rewrites the texts that differ; the shapes of `from` and `to` are the same.
    fn retext(&self, from: &TrayView, to: &TrayView) -> tauri::Result<()> {
        if from.status_line != to.status_line {
            self.status.set_text(&to.status_line)?;
        }
        if let (Some(item), Some(text)) = (&self.account, &to.account_line)
            && from.account_line.as_ref() != Some(text)
        {
            item.set_text(text)?;
        }
        if let (Some(item), Some(switch)) = (&self.internet, &to.internet)
            && from.internet.as_ref() != Some(switch)
        {
            item.set_checked(switch.enabled)?;
        }
        for ((items, old), new) in self
            .resources
            .iter()
            .zip(&from.resources)
            .zip(&to.resources)
        {
            if old.label != new.label {
                items.submenu.set_text(&new.label)?;
            }
            if old.address != new.address {
                items.address.set_text(&new.address)?;
            }
            if old.site != new.site {
                items.site.set_text(&new.site)?;
            }
            if old.status != new.status {
                items.state.set_text(&new.status)?;
            }
        }
        Ok(())
    }
}

fn menu<R: Runtime>(app: &AppHandle<R>, tray: &TrayView) -> tauri::Result<(Menu<R>, MenuItems<R>)> {
    let menu = Menu::new(app)?;
    let status = MenuItem::with_id(app, "status", &tray.status_line, false, None::<&str>)?;
    menu.append(&status)?;
    let account = match &tray.account_line {
        Some(line) => {
            let item = MenuItem::with_id(app, "account", line, false, None::<&str>)?;
            menu.append(&item)?;
            Some(item)
        }
        None => None,
    };
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    let mut resources = Vec::with_capacity(tray.resources.len());
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
            let address = info("address", &resource.address)?;
            let site = info("site", &resource.site)?;
            let state = info("state", &resource.status)?;
            let copy = MenuItem::with_id(
                app,
                format!("{MENU_COPY_PREFIX}{}", resource.id),
                "Copy address",
                true,
                None::<&str>,
            )?;
            let items: [&dyn IsMenuItem<R>; 4] = [&address, &site, &state, &copy];
            let submenu = Submenu::with_items(app, &resource.label, true, &items)?;
            menu.append(&submenu)?;
            resources.push(ResourceItems {
                submenu,
                address,
                site,
                state,
            });
        }
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    let internet = match &tray.internet {
        Some(switch) => {
            let item = CheckMenuItem::with_id(
                app,
                format!("{MENU_INTERNET_PREFIX}{}", switch.resource_id),
                "Send all traffic through Ember",
                true,
                switch.enabled,
                None::<&str>,
            )?;
            menu.append(&item)?;
            menu.append(&PredefinedMenuItem::separator(app)?)?;
            Some(item)
        }
        None => None,
    };
    let (id, label, enabled) = match tray.action {
        SessionAction::SignInUnavailable => (MENU_SIGN_IN, "Sign in…", false),
        SessionAction::SignIn => (MENU_SIGN_IN, "Sign in…", true),
        SessionAction::CancelSignIn => (MENU_CANCEL_SIGN_IN, "Cancel sign-in", true),
        SessionAction::SignOut => (MENU_SIGN_OUT, "Sign out", true),
    };
    menu.append(&MenuItem::with_id(app, id, label, enabled, None::<&str>)?)?;
    for (id, label) in [(MENU_OPEN, "Open Ember"), (MENU_SETTINGS, "Settings")] {
        menu.append(&MenuItem::with_id(app, id, label, true, None::<&str>)?)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&MenuItem::with_id(
        app,
        MENU_QUIT,
        "Quit Ember",
        true,
        None::<&str>,
    )?)?;
    Ok((
        menu,
        MenuItems {
            status,
            account,
            resources,
            internet,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_protocol::ipc::{ServiceSettings, ViewState};

    const KINDS: [TrayIconKind; 5] = [
        TrayIconKind::ServiceUnreachable,
        TrayIconKind::SignedOut,
        TrayIconKind::Connecting,
        TrayIconKind::SignedIn,
        TrayIconKind::Degraded,
    ];

    /// macOS draws a template from its alpha alone: a colour would be lost, and states told
    /// apart only by colour would look the same in the menu bar.
    #[test]
    fn macos_tray_icons_are_black_templates_that_differ_by_shape() {
        let alphas: Vec<Vec<u8>> = KINDS
            .iter()
            .map(|kind| {
                let image = Image::from_bytes(template_png(*kind)).unwrap();
                let rgba = image.rgba();
                assert!(
                    rgba.chunks(4).all(|p| p[..3] == [0, 0, 0]),
                    "{kind:?} has colour"
                );
                rgba.chunks(4).map(|p| p[3]).collect()
            })
            .collect();
        for (i, a) in alphas.iter().enumerate() {
            assert!(
                a.iter().any(|&alpha| alpha > 200),
                "{:?} is empty",
                KINDS[i]
            );
            for (j, b) in alphas.iter().enumerate().skip(i + 1) {
                let differing = a
                    .iter()
                    .zip(b)
                    .filter(|(x, y)| x.abs_diff(**y) > 128)
                    .count();
                assert!(
                    differing > 20,
                    "{:?} and {:?} look alike",
                    KINDS[i],
                    KINDS[j]
                );
            }
        }
    }

    fn connected(session: SessionState) -> AppView {
        let mut state = ViewState::signed_out(ServiceSettings {
            portal_url: "http://127.0.0.1:8080".into(),
            log_filter: "info".into(),
        });
        state.session = session;
        AppView {
            service: ServiceStatus::Connected {
                service_version: "0.1.0".into(),
                may_change_settings: true,
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
            name: "Wiki".into(),
            address: "wiki.corp.example".into(),
            reason: Some("all gateways of Berlin are offline".into()),
            ..resource_view("res_1", ResourceState::Unreachable)
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

    /// A resource of site Berlin with nothing measured yet.
    fn resource_view(id: &str, state: ResourceState) -> ResourceView {
        ResourceView {
            id: id.into(),
            name: format!("Resource {id}"),
            address: format!("{id}.corp.example"),
            address_description: None,
            site: "Berlin".into(),
            state,
            reason: None,
            path: None,
            rtt_ms: None,
            rx_bytes: 0,
            tx_bytes: 0,
            enabled: None,
        }
    }

    fn signed_in_with(resources: &[(&str, ResourceState, u64)]) -> TrayView {
        with_reason(resources, None)
    }

    fn with_reason(resources: &[(&str, ResourceState, u64)], reason: Option<&str>) -> TrayView {
        let mut view = connected(SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada".into(),
        });
        let state = view.state.as_mut().unwrap();
        for (id, resource_state, rx_bytes) in resources {
            state.resources.push(ResourceView {
                reason: reason.map(str::to_owned),
                rx_bytes: *rx_bytes,
                ..resource_view(id, *resource_state)
            });
        }
        tray_view(&view)
    }

    #[test]
    fn a_new_reason_for_the_same_state_is_rewritten_in_the_open_menu() {
        let offline = with_reason(
            &[("a", ResourceState::Unreachable, 0)],
            Some("all gateways of Berlin are offline"),
        );
        let denied = with_reason(
            &[("a", ResourceState::Unreachable, 0)],
            Some("access denied"),
        );
        assert_eq!(
            change(&offline, &denied),
            TrayChange {
                icon: false,
                menu: MenuChange::Texts
            }
        );
    }

    #[test]
    fn a_resource_changing_state_retitles_its_submenu_where_the_platform_can() {
        let idle = signed_in_with(&[("a", ResourceState::Idle, 0), ("b", ResourceState::Idle, 0)]);
        let active = signed_in_with(&[
            ("a", ResourceState::Active, 0),
            ("b", ResourceState::Idle, 0),
        ]);
        let expected = if SUBMENU_TITLES_CHANGE_IN_PLACE {
            MenuChange::Texts
        } else {
            MenuChange::Rebuild
        };
        assert_eq!(
            change(&idle, &active),
            TrayChange {
                icon: false,
                menu: expected
            }
        );
    }

    #[test]
    fn traffic_counters_alone_leave_the_tray_untouched() {
        let before = signed_in_with(&[("a", ResourceState::Active, 100)]);
        let after = signed_in_with(&[("a", ResourceState::Active, 5_000)]);
        assert_eq!(
            change(&before, &after),
            TrayChange {
                icon: false,
                menu: MenuChange::Nothing
            }
        );
    }

    #[test]
    fn a_broken_resource_changes_the_icon() {
        let fine = signed_in_with(&[("a", ResourceState::Active, 0)]);
        let broken = signed_in_with(&[("a", ResourceState::Broken, 0)]);
        assert!(change(&fine, &broken).icon);
        assert!(!change(&fine, &fine).icon);
    }

    #[test]
    fn the_internet_switch_shows_when_granted_and_flips_in_place() {
        let mut off = signed_in_with(&[("web", ResourceState::Idle, 0)]);
        assert_eq!(off.internet, None);
        let mut view = connected(SessionState::SignedIn {
            account: "acme".into(),
            actor: "Ada".into(),
        });
        let state = view.state.as_mut().unwrap();
        state.resources.push(ResourceView {
            name: "Internet".into(),
            address: "Internet".into(),
            site: "Exit".into(),
            enabled: Some(false),
            ..resource_view("res_internet", ResourceState::Unknown)
        });
        let granted_off = tray_view(&view);
        assert_eq!(
            granted_off.internet,
            Some(InternetSwitch {
                resource_id: "res_internet".into(),
                enabled: false
            })
        );
        view.state.as_mut().unwrap().resources[0].enabled = Some(true);
        let granted_on = tray_view(&view);
        assert_eq!(change(&granted_off, &granted_on).menu, MenuChange::Texts);
        off.resources = granted_off.resources.clone();
        assert_eq!(change(&off, &granted_off).menu, MenuChange::Rebuild);
    }

    #[test]
    fn signing_in_or_a_new_resource_rebuilds_the_menu() {
        let signed_out = tray_view(&connected(SessionState::SignedOut { reason: None }));
        let one = signed_in_with(&[("a", ResourceState::Idle, 0)]);
        let two = signed_in_with(&[("a", ResourceState::Idle, 0), ("b", ResourceState::Idle, 0)]);
        assert_eq!(change(&signed_out, &one).menu, MenuChange::Rebuild);
        assert_eq!(change(&one, &two).menu, MenuChange::Rebuild);
        assert_eq!(change(&two, &one).menu, MenuChange::Rebuild);
    }
}
