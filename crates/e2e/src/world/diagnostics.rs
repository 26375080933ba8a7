//! What a failed test prints.

use super::*;

impl World {
    /// The end of every log of the world, for a failing test's output.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let mut files = Vec::new();
        collect_logs(&self.dir, &mut files);
        files.push(self.coturn.log.clone());
        files.sort();
        for file in files {
            out.push_str(&format!(
                "==> {} <==\n{}\n",
                file.display(),
                tail(&file, lines)
            ));
        }
        out
    }

    pub(super) fn scratch(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{what}-{n}.tmp"))
    }
}
