//! This process's resource usage and the host's load, for `inspect stats`
//! (`rusage`, as Python's `resource.getrusage`) and heartbeats (`loadavg`).

use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Value, json};

/// `getrusage(RUSAGE_SELF)` with Python's field names; `"N/A"` where the
/// platform has none, as Celery says.
pub fn of_this_process() -> Value {
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return json!("N/A");
    };
    let seconds = |time: nix::sys::time::TimeVal| {
        time.tv_sec() as f64 + f64::from(i32::try_from(time.tv_usec()).unwrap_or(0)) / 1e6
    };
    json!({
        "utime": seconds(usage.user_time()),
        "stime": seconds(usage.system_time()),
        "maxrss": usage.max_rss(),
        "ixrss": usage.shared_integral(),
        "idrss": usage.unshared_data_integral(),
        "isrss": usage.unshared_stack_integral(),
        "minflt": usage.minor_page_faults(),
        "majflt": usage.major_page_faults(),
        "nswap": usage.full_swaps(),
        "inblock": usage.block_reads(),
        "oublock": usage.block_writes(),
        "msgsnd": usage.ipc_sends(),
        "msgrcv": usage.ipc_receives(),
        "nsignals": usage.signals(),
        "nvcsw": usage.voluntary_context_switches(),
        "nivcsw": usage.involuntary_context_switches(),
    })
}

/// The 1, 5 and 15-minute load averages, rounded as Celery rounds them.
pub fn load_average() -> [f64; 3] {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(info) = nix::sys::sysinfo::sysinfo() {
        let (one, five, fifteen) = info.load_average();
        return [one, five, fifteen].map(|load| (load * 100.0).round() / 100.0);
    }
    [0.0; 3]
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_is_read_from_the_kernel() {
        let usage = super::of_this_process();
        assert!(usage["maxrss"].as_i64().is_some_and(|kb| kb > 0), "{usage}");
        assert!(super::load_average().iter().all(|load| *load >= 0.0));
    }
}
