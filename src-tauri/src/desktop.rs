//! The [`Desktop`] the controller drives in the real app: the webview, the tray, the browser.

use std::sync::Mutex;

use tauri::{AppHandle, Runtime};
use tauri_plugin_opener::OpenerExt as _;
use tauri_specta::Event as _;

use crate::controller::Desktop;
use crate::tray::{self, Tray};
use crate::view::AppView;

/// Sent to the webview whenever the view changes.
#[derive(Debug, Clone, serde::Serialize, specta::Type, tauri_specta::Event)]
pub struct ViewChanged(pub AppView);

/// Asks the webview to show a page (the tray's "Settings" item).
#[derive(Debug, Clone, serde::Serialize, specta::Type, tauri_specta::Event)]
pub struct Navigate(pub crate::view::Page);

#[derive(Debug)]
pub struct TauriDesktop<R: Runtime> {
    app: AppHandle<R>,
    tray: Mutex<Tray<R>>,
}

impl<R: Runtime> TauriDesktop<R> {
    pub fn new(app: AppHandle<R>, tray: Tray<R>) -> Self {
        Self {
            app,
            tray: Mutex::new(tray),
        }
    }
}

impl<R: Runtime> Desktop for TauriDesktop<R> {
    fn show_view(&self, view: &AppView) {
        if let Err(e) = ViewChanged(view.clone()).emit(&self.app) {
            tracing::warn!("Cannot send the view to the window: {e}");
        }
        let Ok(mut tray) = self.tray.lock() else {
            return;
        };
        let started = std::time::Instant::now();
        match tray.show(&self.app, &tray::tray_view(view)) {
            // The benchmark (tests/gui/bench.mjs) reads this line.
            Ok(change) if change.icon || change.menu != tray::MenuChange::Nothing => {
                tracing::debug!(
                    menu = ?change.menu,
                    icon = change.icon,
                    took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "Tray updated"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("Cannot update the tray: {e}"),
        }
    }

    fn notify(&self, notification: crate::notifications::Notification) {
        crate::notifications::show(notification);
    }

    fn open_browser(&self, url: &str) -> Result<(), String> {
        self.app
            .opener()
            .open_url(url, None::<&str>)
            .map_err(|e| e.to_string())
    }
}
