//! The main window's life: created when the user asks for it, shown once the webview has drawn
//! the first view (no blank frame), destroyed when closed. Ember lives in the tray; a closed
//! window gives back the memory of its WebKit processes instead of keeping them hidden.

use std::sync::Mutex;
use std::time::Duration;

use tauri::{AppHandle, Manager as _, Runtime, WebviewWindow, WebviewWindowBuilder};
use tauri_specta::Event as _;

use crate::desktop::Navigate;

#[cfg(target_os = "linux")]
mod linux;
use crate::view::Page;

pub const MAIN_WINDOW: &str = "main";

/// A window whose webview never reports ready (a script error) is shown after this anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Managed state: the page asked for while the window is being created, until it is ready.
#[derive(Debug, Default)]
pub struct MainWindow {
    /// `Some` from creation until the webview reports ready; holds the page to open on.
    pending: Mutex<Option<Option<Page>>>,
}

/// Shows the main window on `page` (or the page it shows), creating it if needed.
pub fn show<R: Runtime>(app: &AppHandle<R>, page: Option<Page>) {
    let state = app.state::<MainWindow>();
    let Ok(mut pending) = state.pending.lock() else {
        return;
    };
    if let Some(asked) = pending.as_mut() {
        // Still being created: it opens on the latest page asked for.
        if page.is_some() {
            *asked = page;
        }
        return;
    }
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        reveal(&window);
        if let Some(page) = page
            && let Err(e) = Navigate(page).emit(app)
        {
            tracing::warn!("Cannot switch the page: {e}");
        }
        return;
    }
    if let Err(e) = create(app) {
        tracing::error!("Cannot create the window: {e}");
        return;
    }
    *pending = Some(page);
    drop(pending);

    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(READY_TIMEOUT).await;
        if ready(&app).is_some() {
            tracing::warn!("The window did not report ready in time; shown anyway");
        }
    });
}

/// The webview drew its first view: show the window. Answers the page it should open on.
pub fn ready<R: Runtime>(app: &AppHandle<R>) -> Option<Option<Page>> {
    let state = app.state::<MainWindow>();
    let page = state.pending.lock().ok()?.take()?;
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        reveal(&window);
    }
    Some(page)
}

/// The window was destroyed (closed by the user): the next `show` creates a new one.
pub fn destroyed<R: Runtime>(app: &AppHandle<R>) {
    if let Ok(mut pending) = app.state::<MainWindow>().pending.lock() {
        *pending = None;
    }
}

fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<WebviewWindow<R>> {
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned()
        .unwrap_or_default();
    // The configuration keeps it invisible until `ready`.
    let window = WebviewWindowBuilder::from_config(app, &config)?.build()?;
    #[cfg(target_os = "linux")]
    if let Err(e) = window.with_webview(|webview| linux::tune(&webview.inner())) {
        tracing::warn!("Cannot tune the webview: {e}");
    }
    Ok(window)
}

fn reveal<R: Runtime>(window: &WebviewWindow<R>) {
    if let Err(e) = window
        .show()
        .and_then(|()| window.unminimize())
        .and_then(|()| window.set_focus())
    {
        tracing::warn!("Cannot show the window: {e}");
    }
}
