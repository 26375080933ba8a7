//! `ember-tunnel run` inside a network namespace, its folders in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ember_ipc::Endpoint;
use ember_ipc::client::{Connection, connect};

pub const BIN: &str = env!("CARGO_BIN_EXE_ember-tunnel");

pub struct NsService {
    child: Child,
    dir: PathBuf,
}

impl NsService {
    /// Starts the service in `ns` and waits for its socket. `dns_mode` as on the command
    /// line; `log_filter` becomes `EMBER_LOG`.
    pub fn start(ns: &str, dir: &Path, dns_mode: &str, log_filter: &str) -> Self {
        let child = ember_testbed::netns_command(ns, BIN)
            .args(["run", "--dns-mode", dns_mode])
            .arg("--runtime-dir")
            .arg(dir.join("run"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("log"))
            // The test portal serves plain http on the testbed's internet.
            .args(["--allow-http-portal", "198.51.100.0/24"])
            .env("EMBER_LOG", log_filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Self {
            child,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(service.socket()).is_err() {
            assert!(Instant::now() < deadline, "the service did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        service
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/tunnel.sock")
    }

    pub async fn app(&self, name: &str) -> Connection {
        connect(&Endpoint(self.socket()), name).await.unwrap().0
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Stops the service; on a failing test (or with `EMBER_TEST_SHOW_LOGS=1`) prints its logs.
impl Drop for NsService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("EMBER_TEST_SHOW_LOGS").is_some() {
            for entry in std::fs::read_dir(self.dir.join("log"))
                .into_iter()
                .flatten()
            {
                let Ok(entry) = entry else { continue };
                let path = entry.path();
                eprintln!("--- {}", path.display());
                eprintln!("{}", std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
}
