//! The main window's life: created when the user asks for it, shown once the webview has drawn
//! the first view (no blank frame), destroyed when closed. Ember lives in the tray; a closed
//! window gives back the memory of its WebKit processes instead of keeping them hidden.

use std::sync::Mutex;
use std::time::Duration;

use tauri::{AppHandle, Manager as _, Runtime, WebviewWindow, WebviewWindowBuilder};
use tauri_specta::Event as _;

use crate::desktop::Navigate;
use crate::view::Page;

#[cfg(target_os = "linux")]
mod linux;

pub const MAIN_WINDOW: &str = "main";

/// A window whose webview never reports ready (a script error) is shown after this anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Managed state: the window being opened, from its creation until the webview is ready.
#[derive(Debug, Default)]
pub struct MainWindow {
    opening: Mutex<Option<Opening>>,
}

/// A window created but not shown yet.
#[derive(Debug)]
pub struct Opening {
    /// The page the user asked for meanwhile, if any.
    pub page: Option<Page>,
}

/// Shows the main window on `page` (or the page it shows), creating it if needed.
pub fn show<R: Runtime>(app: &AppHandle<R>, page: Option<Page>) {
    let state = app.state::<MainWindow>();
    let Ok(mut opening) = state.opening.lock() else {
        return;
    };
    if let Some(opening) = opening.as_mut() {
        // Still being created: it opens on the latest page asked for.
        if page.is_some() {
            opening.page = page;
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
    *opening = Some(Opening { page });
    drop(opening);

    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(READY_TIMEOUT).await;
        if ready(&app).is_some() {
            tracing::warn!("The window did not report ready in time; shown anyway");
        }
    });
}

/// The webview drew its first view: show the window. Answers the window that was opening
/// (`None` when it was shown already).
pub fn ready<R: Runtime>(app: &AppHandle<R>) -> Option<Opening> {
    let state = app.state::<MainWindow>();
    let opening = state.opening.lock().ok()?.take()?;
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        reveal(&window);
    }
    Some(opening)
}

/// The window was destroyed (closed by the user): the next `show` creates a new one.
pub fn destroyed<R: Runtime>(app: &AppHandle<R>) {
    if let Ok(mut opening) = app.state::<MainWindow>().opening.lock() {
        *opening = None;
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
