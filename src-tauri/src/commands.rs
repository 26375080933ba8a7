//! The commands the webview may call. Each one is a thin call into the controller.

use ember_protocol::ipc::ServiceSettings;
use tauri::State;

use crate::controller::ControllerHandle;
use crate::diagnostics;
use crate::preferences::{self, AppPreferences};
use crate::view::{AppError, AppView, Page};

#[tauri::command]
#[specta::specta]
pub fn get_view(controller: State<'_, ControllerHandle>) -> AppView {
    controller.view()
}

/// The webview drew its first view: the window may be shown. Answers the page to open on
/// when the user asked for one (the tray's "Settings").
#[tauri::command]
#[specta::specta]
pub fn window_ready(app: tauri::AppHandle) -> Option<Page> {
    crate::window::ready(&app).and_then(|opening| opening.page)
}

#[tauri::command]
#[specta::specta]
pub async fn apply_settings(
    controller: State<'_, ControllerHandle>,
    settings: ServiceSettings,
) -> Result<(), AppError> {
    controller.apply_settings(settings).await
}

/// Switches a resource the user may switch (the internet resource) on or off.
#[tauri::command]
#[specta::specta]
pub async fn set_resource_enabled(
    controller: State<'_, ControllerHandle>,
    resource_id: String,
    enabled: bool,
) -> Result<(), AppError> {
    controller.set_resource_enabled(resource_id, enabled).await
}

#[tauri::command]
#[specta::specta]
pub async fn sign_in(controller: State<'_, ControllerHandle>) -> Result<(), AppError> {
    controller.sign_in().await
}

#[tauri::command]
#[specta::specta]
pub async fn cancel_sign_in(controller: State<'_, ControllerHandle>) -> Result<(), AppError> {
    controller.cancel_sign_in().await;
    Ok(())
}

#[tauri::command]
#[specta::specta]
pub async fn sign_out(controller: State<'_, ControllerHandle>) -> Result<(), AppError> {
    controller.sign_out().await
}

/// Where the app keeps its files; managed by Tauri so commands need no `AppHandle`.
#[derive(Debug, Clone)]
pub struct AppPaths {
    pub log_dir: std::path::PathBuf,
    pub config_dir: std::path::PathBuf,
    /// Where log bundles go: the user's Downloads folder, else the home folder.
    pub bundle_dir: std::path::PathBuf,
}

#[tauri::command]
#[specta::specta]
pub fn get_preferences(paths: State<'_, AppPaths>) -> AppPreferences {
    preferences::load(&paths.config_dir)
}

#[tauri::command]
#[specta::specta]
pub fn set_preferences(
    paths: State<'_, AppPaths>,
    autostart: State<'_, tauri_plugin_autostart::AutoLaunchManager>,
    preferences: AppPreferences,
) -> Result<(), AppError> {
    let local = |detail: String| AppError::Local { detail };
    preferences::save(&paths.config_dir, &preferences).map_err(|e| local(e.to_string()))?;
    let result = if preferences.start_on_login {
        autostart.enable()
    } else {
        autostart.disable()
    };
    result.map_err(|e| local(format!("cannot change the login item: {e}")))
}

/// Writes the diagnostics bundle and returns its path.
#[tauri::command]
#[specta::specta]
pub async fn export_logs(
    controller: State<'_, ControllerHandle>,
    paths: State<'_, AppPaths>,
) -> Result<String, AppError> {
    let service_logs = match controller.export_service_logs().await {
        Ok(files) => files,
        // The app's own logs are worth sending even when the service is gone.
        Err(e) => vec![(
            "unavailable.txt".into(),
            format!("The service's logs could not be exported: {e}\n").into_bytes(),
        )],
    };
    let view = controller.view();
    let contents = diagnostics::BundleContents {
        service_logs,
        connection_details: serde_json::to_string_pretty(&view).unwrap_or_default(),
    };
    let stamp = diagnostics::stamp(std::time::SystemTime::now());
    let paths = paths.inner().clone();
    let written = tauri::async_runtime::spawn_blocking(move || {
        std::fs::create_dir_all(&paths.bundle_dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                diagnostics::write_bundle(&paths.bundle_dir, &stamp, &paths.log_dir, &contents)
                    .map_err(|e| e.to_string())
            })
    })
    .await
    .map_err(|e| AppError::Local {
        detail: e.to_string(),
    })?;
    let path = written.map_err(|detail| AppError::Local { detail })?;
    tracing::info!(path = %path.display(), "Log bundle written");
    Ok(path.display().to_string())
}

/// Deletes the app's older log files and returns how many.
#[tauri::command]
#[specta::specta]
pub fn clear_logs(paths: State<'_, AppPaths>) -> Result<u32, AppError> {
    let newest = std::fs::read_dir(&paths.log_dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, path)| path);
    diagnostics::clear_app_logs(&paths.log_dir, newest.as_deref()).map_err(|e| AppError::Local {
        detail: format!("cannot clear the logs: {e}"),
    })
}
