//! The macOS pkg cannot be built on Linux (no pkgbuild, no SDK), so its launchd daemon and
//! scripts are checked against the code here: a label, path or argument that drifted from the
//! service would leave a Mac with a daemon launchd cannot start, an app looking for the socket
//! in the wrong place, or an uninstaller that leaves the service's files behind.
//!
//! The service's macOS folders and label are constants compiled on every OS
//! (`platform::paths::macos`); ember-protocol's macOS socket path is behind
//! `cfg(target_os = "macos")`, so it is read from its source line; a refactor that moves it
//! makes these tests fail with the place to look, never pass silently.

use std::path::{Path, PathBuf};
use std::process::Command;

use ember_tunnel_service::platform::paths::macos;

const BIN: &str = env!("CARGO_BIN_EXE_ember-tunnel");
const LABEL: &str = macos::LAUNCHD_LABEL;
/// Where build-pkg.sh puts the app bundle, with the service inside it.
const INSTALLED_SERVICE: &str = macos::SERVICE_PROGRAM;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn daemon() -> plist::Dictionary {
    let path = repo().join(format!("installer/macos/{LABEL}.plist"));
    plist::Value::from_file(&path)
        .unwrap_or_else(|e| panic!("{} is not a property list: {e}", path.display()))
        .into_dictionary()
        .expect("the launchd plist is a dictionary")
}

fn string<'a>(dict: &'a plist::Dictionary, key: &str) -> &'a str {
    dict.get(key)
        .and_then(plist::Value::as_string)
        .unwrap_or_else(|| panic!("the launchd plist has no string {key}"))
}

/// The string literal on the line after `marker` (or on it), in `source`.
fn literal_after(file: &str, marker: &str) -> String {
    let source = read(file);
    let start = source
        .find(marker)
        .unwrap_or_else(|| panic!("{file} has no `{marker}`: where did the macOS value go?"));
    let rest = &source[start + marker.len()..];
    let open = rest.find('"').expect("a string literal follows") + 1;
    let close = open + rest[open..].find('"').expect("the literal ends");
    rest[open..close].to_owned()
}

/// The service's macOS folders, as the code defines them.
struct MacosFolders {
    runtime: String,
    socket: String,
    state: String,
    logs: String,
}

fn macos_folders() -> MacosFolders {
    let protocol = "crates/protocol/src/ipc.rs";
    let folders = MacosFolders {
        runtime: literal_after(
            protocol,
            "#[cfg(target_os = \"macos\")]\npub const RUNTIME_DIR: &str =",
        ),
        socket: literal_after(
            protocol,
            "#[cfg(target_os = \"macos\")]\npub const SOCKET_PATH: &str =",
        ),
        state: macos::STATE_DIR.to_owned(),
        logs: macos::LOG_DIR.to_owned(),
    };
    #[cfg(target_os = "macos")]
    {
        use ember_tunnel_service::platform::paths;
        assert_eq!(folders.runtime, ember_protocol::ipc::RUNTIME_DIR);
        assert_eq!(folders.socket, ember_protocol::ipc::SOCKET_PATH);
        assert_eq!(Path::new(&folders.state), paths::default_state_dir());
        assert_eq!(Path::new(&folders.logs), paths::default_log_dir());
    }
    folders
}

#[test]
fn launchd_starts_the_binary_the_pkg_installs_with_a_subcommand_it_accepts() {
    let daemon = daemon();
    let arguments: Vec<&str> = daemon
        .get("ProgramArguments")
        .and_then(plist::Value::as_array)
        .expect("ProgramArguments is an array")
        .iter()
        .map(|a| a.as_string().expect("each argument is a string"))
        .collect();
    assert_eq!(arguments.first().copied(), Some(INSTALLED_SERVICE));
    let build = read("installer/macos/build-pkg.sh");
    assert!(
        build.contains("contents=$stage/Applications/Ember.app/Contents")
            && build.contains("\"$contents/MacOS/ember-tunnel\""),
        "build-pkg.sh no longer installs the service at {INSTALLED_SERVICE}"
    );

    // The same command line with --help: clap exits 0 only when every word before it parses.
    let output = Command::new(BIN)
        .args(&arguments[1..])
        .arg("--help")
        .output()
        .expect("ember-tunnel runs");
    assert!(
        output.status.success(),
        "ember-tunnel refuses the daemon's arguments {:?}: {}",
        &arguments[1..],
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        arguments.get(1).copied(),
        Some("run"),
        "the daemon runs the service, not a client command"
    );
}

#[test]
fn the_label_is_the_one_the_install_and_uninstall_scripts_use() {
    assert_eq!(string(&daemon(), "Label"), LABEL);
    for script in [
        "installer/macos/scripts/preinstall",
        "installer/macos/scripts/postinstall",
        "installer/macos/uninstall.sh",
    ] {
        assert!(
            read(script).contains(&format!("\nLABEL={LABEL}\n")),
            "{script} uses another label"
        );
    }
    // postinstall copies the plist from the bundle, where build-pkg.sh put it under the label.
    let build = read("installer/macos/build-pkg.sh");
    assert!(build.contains(&format!(
        "installer/macos/{LABEL}.plist \"$contents/Resources/{LABEL}.plist\""
    )));
    assert!(
        read("installer/macos/scripts/postinstall")
            .contains("\"$APP/Contents/Resources/$LABEL.plist\"")
    );

    // The package identifier: built, installed by the distribution, forgotten by the uninstaller.
    assert!(build.contains("--identifier dev.ember.pkg"));
    assert!(read("installer/macos/distribution.xml").contains("<pkg-ref id=\"dev.ember.pkg\""));
    assert!(read("installer/macos/uninstall.sh").contains("pkgutil --forget dev.ember.pkg"));
}

#[test]
fn the_app_finds_the_socket_in_the_folder_the_service_creates() {
    let folders = macos_folders();
    // One folder for both sides: the app once looked in /run while the service used /var/run.
    assert_eq!(
        folders.socket,
        format!(
            "{}/{}",
            folders.runtime,
            ember_protocol::ipc::SOCKET_FILE_NAME
        )
    );
    // /run does not exist on macOS; /var/run is where launchd daemons keep sockets.
    assert!(
        folders.runtime.starts_with("/var/run/"),
        "{}",
        folders.runtime
    );
}

#[test]
fn the_daemon_and_uninstaller_use_the_services_macos_folders() {
    let folders = macos_folders();
    let stderr_log = string(&daemon(), "StandardErrorPath").to_owned();
    assert_eq!(
        Path::new(&stderr_log).parent(),
        Some(Path::new(&folders.logs)),
        "launchd's stderr log is outside the service's log folder"
    );
    assert!(
        read("installer/macos/scripts/postinstall")
            .contains(&format!("mkdir -p {}\n", folders.logs)),
        "postinstall does not create the log folder launchd writes into"
    );
    // --purge removes every folder the service writes, and only those.
    let uninstall = read("installer/macos/uninstall.sh");
    let purge = uninstall
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("rm -rf \"/Library/Application Support")
        })
        .expect("uninstall.sh --purge removes the service's folders");
    for folder in [&folders.state, &folders.logs, &folders.runtime] {
        let quoted = format!("\"{folder}\"");
        assert!(
            purge.split_whitespace().any(|w| w == folder) || purge.contains(&quoted),
            "uninstall.sh --purge leaves {folder}: {purge}"
        );
    }
}

#[test]
fn the_app_bundle_has_no_dock_icon() {
    // Tauri's CLI merges src-tauri/Info.plist into Ember.app's: a tray app has no Dock icon.
    let path = repo().join("src-tauri/Info.plist");
    let info = plist::Value::from_file(&path)
        .unwrap_or_else(|e| panic!("{} is not a property list: {e}", path.display()));
    let ui_element = info
        .as_dictionary()
        .and_then(|d| d.get("LSUIElement"))
        .and_then(plist::Value::as_boolean);
    assert_eq!(ui_element, Some(true));
}
