//! Ember's tray app. It holds no privileges and no routes: it shows what the tunnel service
//! reports and forwards what the user asks for (ARCHITECTURE §1, §5).
//!
//! - [`controller`]: the connection to the service and the [`view::AppView`], behind a trait
//!   for the desktop side so it is tested without a window.
//! - [`commands`] and [`bindings`]: what the webview may call, with generated TypeScript types.
//! - [`tray`], [`desktop`]: the tray icon and the Tauri implementation of the desktop side.

pub mod bindings;
pub mod commands;
pub mod controller;
pub mod desktop;
pub mod diagnostics;
pub mod notifications;
pub mod preferences;
pub mod sign_in;
pub mod token_store;
pub mod tray;
pub mod view;
pub mod window;

use std::path::PathBuf;

use anyhow::Context as _;
use ember_ipc::Endpoint;
use tauri::{AppHandle, Manager as _, RunEvent, Runtime, WindowEvent};
use tauri_plugin_deep_link::DeepLinkExt as _;

use crate::controller::{Controller, ControllerHandle};
use crate::desktop::TauriDesktop;
use crate::token_store::{Keychain, TokenVault};
use crate::view::{AppView, Page};

/// Starts the app and returns when the user quits.
pub fn run() -> anyhow::Result<()> {
    // The app holds no privileges by design (the service does); as root it would also write
    // root-owned files into the user's folders and keychain.
    #[cfg(unix)]
    if nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "Ember's tray app does not run as root. Start it as your own user; the tunnel \
             service does the privileged work."
        );
    }
    let specta = bindings::builder();
    let app = tauri::Builder::default()
        // First, so a second instance hands over its arguments (and deep link) and exits
        // before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| {
            window::show(app, None);
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![preferences::AUTOSTART_ARG]),
        ))
        .invoke_handler(specta.invoke_handler())
        .setup(move |app| {
            // A tray app: no Dock icon, no menu bar of its own (also `LSUIElement` in the
            // bundle's Info.plist, which covers the moments before this runs).
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            specta.mount_events(app);
            setup(app.handle())?;
            Ok(())
        })
        .manage(window::MainWindow::default())
        .on_window_event(|window, event| {
            if let WindowEvent::Destroyed = event {
                window::destroyed(window.app_handle());
            }
        })
        .build(tauri::generate_context!())
        .context("cannot start the app")?;

    app.run(|_app, event| {
        // Only "Quit" (an explicit exit code) ends the app, not the last window closing:
        // Ember stays in the tray.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    Ok(())
}

fn setup<R: Runtime>(app: &AppHandle<R>) -> anyhow::Result<()> {
    let log_dir = app
        .path()
        .app_log_dir()
        .context("no folder for the app's logs")?;
    let filter = std::env::var("EMBER_LOG").unwrap_or_else(|_| "info".into());
    let logs = ember_logging::init(&filter, Some(&log_dir), "app")?;
    app.manage(logs);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), log_dir = %log_dir.display(), "Ember starting");

    // Installed packages ship the URL handler; this keeps development builds working too.
    #[cfg(target_os = "linux")]
    if let Err(e) = app.deep_link().register_all() {
        tracing::warn!("Cannot register the ember:// link handler: {e}");
    }

    let initial_tray = tray::tray_view(&AppView::connecting());
    let tray = tray::Tray::create(app, &initial_tray)?;
    tray.icon()
        .on_menu_event(|app, event| handle_menu(app, event.id().as_ref()));

    let config_dir = app
        .path()
        .app_config_dir()
        .context("no folder for the app's preferences")?;
    let preferences = preferences::load(&config_dir);
    let bundle_dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .unwrap_or_else(|_| log_dir.clone());
    app.manage(commands::AppPaths {
        log_dir: log_dir.clone(),
        config_dir,
        bundle_dir,
    });
    let started_at_login = std::env::args().any(|a| a == preferences::AUTOSTART_ARG);
    if !(started_at_login && preferences.start_minimised) {
        window::show(app, None);
    }

    let (controller, handle) = Controller::new(
        TauriDesktop::new(app.clone(), tray),
        service_endpoint(),
        TokenVault::new(Keychain),
        preferences.connect_on_start,
    );
    tauri::async_runtime::spawn(controller.run());
    app.manage(handle.clone());

    let links = handle.clone();
    app.deep_link().on_open_url(move |event| {
        for link in event.urls() {
            let links = links.clone();
            tauri::async_runtime::spawn(async move { links.deep_link(link).await });
        }
    });
    // A link that started the app arrives here rather than through `on_open_url`.
    if let Ok(Some(started_with)) = app.deep_link().get_current() {
        for link in started_with {
            let links = handle.clone();
            tauri::async_runtime::spawn(async move { links.deep_link(link).await });
        }
    }
    Ok(())
}

/// `EMBER_TUNNEL_SOCKET` points a development build at a service started elsewhere.
fn service_endpoint() -> Endpoint {
    std::env::var_os("EMBER_TUNNEL_SOCKET")
        .map(|path| Endpoint(PathBuf::from(path)))
        .unwrap_or_else(Endpoint::system_default)
}

fn handle_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    match id {
        tray::MENU_SIGN_IN => {
            let controller = app.state::<ControllerHandle>().inner().clone();
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = controller.sign_in().await {
                    tracing::warn!("Sign-in did not start: {e}");
                    window::show(&app, None);
                }
            });
        }
        tray::MENU_CANCEL_SIGN_IN => {
            let controller = app.state::<ControllerHandle>().inner().clone();
            tauri::async_runtime::spawn(async move { controller.cancel_sign_in().await });
        }
        tray::MENU_SIGN_OUT => {
            let controller = app.state::<ControllerHandle>().inner().clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = controller.sign_out().await {
                    tracing::warn!("Sign-out failed: {e}");
                }
            });
        }
        tray::MENU_OPEN => window::show(app, Some(Page::Resources)),
        tray::MENU_SETTINGS => window::show(app, Some(Page::Settings)),
        tray::MENU_QUIT => {
            tracing::info!("Quit from the tray");
            app.exit(0);
        }
        other => {
            if let Some(resource_id) = other.strip_prefix(tray::MENU_COPY_PREFIX) {
                copy_address(app, resource_id);
            } else if let Some(resource_id) = other.strip_prefix(tray::MENU_INTERNET_PREFIX) {
                switch_resource(app, resource_id);
            } else {
                tracing::debug!(id = other, "Unknown menu item");
            }
        }
    }
}

/// Flips the switch of `resource_id` from what the service last reported.
fn switch_resource<R: Runtime>(app: &AppHandle<R>, resource_id: &str) {
    let controller = app.state::<ControllerHandle>().inner().clone();
    let Some(enabled) = controller.resource(resource_id).and_then(|r| r.enabled) else {
        return;
    };
    let resource_id = resource_id.to_owned();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = controller.set_resource_enabled(resource_id, !enabled).await {
            tracing::warn!("Cannot switch the resource: {e}");
        }
    });
}

fn copy_address<R: Runtime>(app: &AppHandle<R>, resource_id: &str) {
    use tauri_plugin_clipboard_manager::ClipboardExt as _;
    let Some(resource) = app.state::<ControllerHandle>().resource(resource_id) else {
        return;
    };
    if let Err(e) = app.clipboard().write_text(resource.address) {
        tracing::warn!("Cannot copy the address: {e}");
    }
}
