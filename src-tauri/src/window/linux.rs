//! WebKitGTK settings that keep the window's memory down. The window shows a few screens of
//! text: GPU compositing buys nothing there and costs the web process its GL buffers (software
//! GL on machines without a usable GPU), and caches for pages never visited again are waste.

use webkit2gtk::{
    CacheModel, HardwareAccelerationPolicy, SettingsExt as _, WebContextExt as _, WebViewExt as _,
};

pub fn tune(webview: &webkit2gtk::WebView) {
    if let Some(settings) = webview.settings() {
        // Switching compositing off under a WebDriver session stalls the session (seen with
        // WebKitWebDriver 2.4x here), so windows driven by the GUI tests keep the default;
        // the app benchmark (tests/gui/bench.mjs) runs without WebDriver and covers this.
        if !webview.is_controlled_by_automation() {
            settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
        }
        settings.set_enable_page_cache(false);
    }
    if let Some(context) = webview.context() {
        context.set_cache_model(CacheModel::DocumentViewer);
    }
}
