/// The commands the webview can invoke; the build script turns each into a permission.
pub const ALL: &[&str] = &[
    "get_view",
    "window_ready",
    "apply_settings",
    "set_resource_enabled",
    "sign_in",
    "cancel_sign_in",
    "sign_out",
    "get_preferences",
    "set_preferences",
    "export_logs",
    "clear_logs",
];
