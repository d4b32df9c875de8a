//! A process's memory as Linux reports it (`/proc/PID/status`). Included with
//! `#[path = "common/proc.rs"] mod proc;` (an example is its own crate).

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `VmRSS` (resident now) and `VmHWM` (the peak of its life) of process `pid`, in KiB.
pub(crate) fn memory_kib(pid: &str) -> Result<(u64, u64), BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64, BoxError> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line.split_whitespace().nth(1).ok_or("no value")?.parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
