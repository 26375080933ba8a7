//! `ember://` links any local program can open: the sign-in callback parser refuses what it
//! does not know without a panic, and a link it accepts has exactly the promised shape.
#![no_main]

use ember_protocol::sign_in::Callback;
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    let Ok(link) = url::Url::parse(text) else {
        return;
    };
    let Ok(callback) = Callback::parse(&link) else {
        return;
    };
    let hex64 = |v: &str| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex64(&callback.state) && hex64(callback.code.expose()));
    for name in [&callback.actor, &callback.account].into_iter().flatten() {
        assert!(name.chars().count() <= 128);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    // Most random text is no URL at all: also try it as the query of a callback.
    check(&format!("ember://sign-in-callback?{text}"));
});
