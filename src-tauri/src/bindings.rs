//! The typed bridge to the webview: commands and events, and their TypeScript bindings in
//! `ui/src/bindings.ts`, generated from the Rust types and never edited by hand.

use std::path::{Path, PathBuf};

use crate::commands;
use crate::desktop::{Navigate, ViewChanged};

pub fn builder() -> tauri_specta::Builder<tauri::Wry> {
    tauri_specta::Builder::<tauri::Wry>::new()
        .commands(tauri_specta::collect_commands![
            commands::get_view,
            commands::window_ready,
            commands::apply_settings,
            commands::set_resource_enabled,
            commands::sign_in,
            commands::cancel_sign_in,
            commands::sign_out,
            commands::get_preferences,
            commands::set_preferences,
            commands::export_logs,
            commands::clear_logs,
        ])
        .events(tauri_specta::collect_events![ViewChanged, Navigate])
        // Byte counters are u64; as JavaScript numbers they stay exact up to 8 PiB.
        .dangerously_cast_bigints_to_number()
        // Every type here has one serde shape, so one TypeScript type each is enough.
        .disable_serde_phases()
}

/// Where the webview's sources expect the bindings.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings.ts")
}

pub fn export(path: &Path) -> Result<(), specta_typescript::Error> {
    builder().export(
        specta_typescript::Typescript::default().header(
            "// Generated from the Rust types by `EMBER_UPDATE_BINDINGS=1 cargo test -p ember-app \
             bindings`. Do not edit.",
        ),
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI fails here when someone changed a Rust type without regenerating the bindings.
    #[test]
    fn bindings_are_up_to_date() {
        if std::env::var_os("EMBER_UPDATE_BINDINGS").is_some() {
            export(&default_path()).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("bindings.ts");
        export(&fresh).unwrap();
        let committed = std::fs::read_to_string(default_path()).unwrap_or_default();
        assert!(
            std::fs::read_to_string(&fresh).unwrap() == committed,
            "ui/src/bindings.ts is stale: run `EMBER_UPDATE_BINDINGS=1 cargo test -p ember-app bindings`"
        );
    }
}
