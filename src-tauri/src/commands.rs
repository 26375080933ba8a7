//! The commands the webview may call. Each one is a thin call into the controller.

use ember_protocol::ipc::ServiceSettings;
use tauri::State;

use crate::controller::ControllerHandle;
use crate::view::{AppError, AppView};

#[tauri::command]
#[specta::specta]
pub fn get_view(controller: State<'_, ControllerHandle>) -> AppView {
    controller.view()
}

#[tauri::command]
#[specta::specta]
pub async fn apply_settings(
    controller: State<'_, ControllerHandle>,
    settings: ServiceSettings,
) -> Result<(), AppError> {
    controller.apply_settings(settings).await
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
