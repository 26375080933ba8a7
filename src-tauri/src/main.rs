// No console window behind the app in Windows release builds.
#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

fn main() -> anyhow::Result<()> {
    ember_app::run()
}
