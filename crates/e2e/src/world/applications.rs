//! Applications in the namespaces: curl, downloads, name lookups.

use super::*;

impl World {
    /// `curl URL` from namespace `ns` (with that namespace's resolv.conf).
    pub fn curl(&self, ns: &str, url: &str, max_time: Duration, extra: &[&str]) -> Result<Fetched> {
        let out = self.scratch("curl");
        let result = run_curl(ns, url, max_time, extra, &out).map(|(status, times)| Fetched {
            status,
            body: std::fs::read(&out).unwrap_or_default(),
            time_connect: times[0],
            time_starttransfer: times[1],
            time_total: times[2],
        });
        let _ = std::fs::remove_file(&out);
        result
    }

    /// `curl` from the client host.
    pub fn client_curl(&self, url: &str, max_time: Duration) -> Result<Fetched> {
        let ns = self.client.host.ns.clone();
        self.curl(&ns, url, max_time, &[])
    }

    /// Downloads `url` from `ns` to a file; the SHA-256 of what arrived.
    pub fn download(
        &self,
        ns: &str,
        url: &str,
        max_time: Duration,
        extra: &[&str],
    ) -> Result<String> {
        let out = self.scratch("download");
        let result = run_curl(ns, url, max_time, extra, &out).and_then(|(status, _)| {
            if status != 200 {
                return Err(Error::Failed(format!("{url} answered {status}")));
            }
            sha256_file(&out)
        });
        let _ = std::fs::remove_file(&out);
        result
    }

    /// Starts a download in the background (e.g. `--limit-rate 2M` to make it last).
    pub fn start_download(&self, ns: &str, url: &str, extra: &[&str]) -> Result<PendingDownload> {
        let out = self.scratch("download");
        let child = ember_testbed::netns_command(ns, "curl")
            .args(["-sS", "--fail", "-o"])
            .arg(&out)
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_error("start curl"))?;
        Ok(PendingDownload {
            child,
            out,
            url: url.to_owned(),
        })
    }

    /// The IPv4 addresses `name` resolves to in `ns` (`getent ahostsv4`, i.e. through that
    /// namespace's resolv.conf); empty when the name does not resolve.
    pub fn resolve(&self, ns: &str, name: &str) -> Result<Vec<Ipv4Addr>> {
        let output = ember_testbed::netns_command(ns, "getent")
            .args(["ahostsv4", name])
            .output()
            .map_err(io_error("run getent"))?;
        // getent exits 2 when the name does not resolve.
        if output.status.code() == Some(2) {
            return Ok(Vec::new());
        }
        if !output.status.success() {
            return Err(Error::Failed(format!(
                "getent ahostsv4 {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let mut addrs: Vec<Ipv4Addr> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect();
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }
}
