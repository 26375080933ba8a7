//! What the benchmark reads from `/proc`: CPU time, resident memory and voluntary context
//! switches (wake-ups) of a process and all its threads.

use std::path::PathBuf;

use crate::{Error, Result, io_error};

/// CPU time (user + system) a process has used so far, all threads, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = read(PathBuf::from(format!("/proc/{pid}/stat")))?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::Failed(format!("unexpected /proc/{pid}/stat: {text}")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error::Failed(format!("unexpected /proc/{pid}/stat: {text}")))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second()?)
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_field(&format!("/proc/{pid}/status"), "VmRSS")
}

/// Voluntary context switches of every thread of `pid`, summed: how often the process went to
/// sleep and was woken up.
pub fn voluntary_switches(pid: u32) -> Result<u64> {
    let tasks = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in std::fs::read_dir(&tasks).map_err(io_error(format!("list {tasks}")))? {
        let entry = entry.map_err(io_error(format!("list {tasks}")))?;
        let status = entry.path().join("status");
        // A thread that ended between the listing and the read is simply not counted.
        if let Ok(n) = status_field(&status.to_string_lossy(), "voluntary_ctxt_switches") {
            total += n;
        }
    }
    Ok(total)
}

fn status_field(path: &str, key: &str) -> Result<u64> {
    let text = read(PathBuf::from(path))?;
    text.lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k == key).then(|| v.split_whitespace().next()?.parse().ok())?
        })
        .ok_or_else(|| Error::Failed(format!("no {key} in {path}")))
}

fn read(path: PathBuf) -> Result<String> {
    std::fs::read_to_string(&path).map_err(io_error(format!("read {}", path.display())))
}

fn clock_ticks_per_second() -> Result<f64> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    if let Some(ticks) = TICKS.get() {
        return Ok(*ticks);
    }
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(io_error("run getconf CLK_TCK"))?;
    let ticks: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| Error::Failed("getconf CLK_TCK printed no number".into()))?;
    Ok(*TICKS.get_or_init(|| ticks))
}

/// The median and the 95th percentile (nearest rank) of `values`.
pub fn median_p95(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let rank = ((0.95 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some((median, sorted[rank - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_memory_and_switches() {
        let pid = std::process::id();
        // Burn CPU until the kernel has counted a tick of it: on a loaded machine 50 ms of
        // wall time can be less than one 10 ms tick of CPU (this failed so under load 16).
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cpu_seconds(pid).unwrap() == 0.0 && std::time::Instant::now() < give_up {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(cpu_seconds(pid).unwrap() > 0.0);
        assert!(rss_kib(pid).unwrap() > 100);
        assert!(voluntary_switches(pid).unwrap() >= 1);
    }

    #[test]
    fn median_and_p95() {
        assert_eq!(median_p95(&[]), None);
        assert_eq!(median_p95(&[3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_p95(&values), Some((10.5, 19.0)));
    }
}
