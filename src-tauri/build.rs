fn main() {
    // Listing the app's commands generates an `allow-<command>` permission for each, so the
    // capability files decide which window may call what.
    let commands = tauri_build::AppManifest::new().commands(crate_commands::ALL);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(commands))
        .expect("tauri-build failed");
}

mod crate_commands {
    include!("src/command_names.rs");
}
