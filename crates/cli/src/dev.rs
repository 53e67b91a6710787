//! `flotilla dev`: three `flotilla serve` processes on loopback, their data under one
//! directory (reused on the next run), a status line per member every second, and a clean
//! stop (SIGTERM to each, then wait) on Ctrl-C or SIGTERM. A member that exits on its own is
//! restarted from its data after a second, so killing one (as the CI's test does) shows a
//! restart from disk.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use flotilla_server::pb;
use flotilla_server::rpc::maintenance_client::MaintenanceClient;

const MEMBERS: [(&str, u16, u16); 3] =
    [("n1", 2379, 2380), ("n2", 22379, 22380), ("n3", 32379, 32380)];

struct Member {
    name: &'static str,
    client: String,
    args: Vec<String>,
    log: PathBuf,
    pid_file: PathBuf,
    child: Option<Child>,
    died_at: Option<Instant>,
}

impl Member {
    fn start(&mut self) -> std::io::Result<()> {
        let exe = std::env::current_exe()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(exe)
            .arg("serve")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        std::fs::write(&self.pid_file, format!("{}\n", child.id()))?;
        self.child = Some(child);
        self.died_at = None;
        Ok(())
    }
}

fn terminate(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the local cluster.
pub fn run(data_dir: &Path, duration_secs: Option<u64>) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(data_dir) {
        eprintln!("flotilla dev: cannot create {}: {e}", data_dir.display());
        return ExitCode::FAILURE;
    }
    let cluster: Vec<String> =
        MEMBERS.iter().map(|(n, _, p)| format!("{n}=http://127.0.0.1:{p}")).collect();
    let cluster = cluster.join(",");
    let mut members: Vec<Member> = MEMBERS
        .iter()
        .map(|(name, c, p)| Member {
            name,
            client: format!("http://127.0.0.1:{c}"),
            args: vec![
                "--name".into(),
                (*name).into(),
                "--data-dir".into(),
                data_dir.join(name).display().to_string(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{c}"),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{p}"),
                "--initial-cluster".into(),
                cluster.clone(),
            ],
            log: data_dir.join(format!("{name}.log")),
            pid_file: data_dir.join(format!("{name}.pid")),
            child: None,
            died_at: None,
        })
        .collect();
    for m in &mut members {
        if let Err(e) = m.start() {
            eprintln!("flotilla dev: cannot start {}: {e}", m.name);
            for m in &mut members {
                if let Some(c) = m.child.as_mut() {
                    terminate(c);
                }
            }
            return ExitCode::FAILURE;
        }
    }
    let endpoints: Vec<&str> = members.iter().map(|m| m.client.as_str()).collect();
    println!("Flotilla: a local 3-member cluster, data in {}", data_dir.display());
    println!("client endpoints: {}", endpoints.join(","));
    // Without the scheme: etcdctl 3.4's `endpoint status` sends the endpoint as the HTTP/2
    // authority, and `http://...` is not a valid one.
    let bare: Vec<&str> =
        endpoints.iter().map(|e| e.strip_prefix("http://").unwrap_or(e)).collect();
    println!("try:  etcdctl --endpoints={} put greeting hello", bare.join(","));
    println!("      etcdctl --endpoints={} endpoint status -w table", bare.join(","));
    println!("logs: {}/n*.log; Ctrl-C stops all three", data_dir.display());

    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flotilla dev: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook_consts::SIGINT, signal_hook_consts::SIGTERM] {
        if let Err(e) = signal_flag(sig, stop.clone()) {
            eprintln!("flotilla dev: cannot handle signals: {e}");
        }
    }
    let end = duration_secs.map(|s| Instant::now() + Duration::from_secs(s));
    let mut last_print = Instant::now() - Duration::from_secs(1);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e)
    {
        for m in &mut members {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    println!("{} exited ({status}); restarting it from its data in 1 s", m.name);
                    m.child = None;
                    m.died_at = Some(Instant::now());
                }
            }
            if m.child.is_none() && m.died_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
            {
                if let Err(e) = m.start() {
                    println!("cannot restart {}: {e}", m.name);
                    m.died_at = Some(Instant::now());
                }
            }
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let line: Vec<String> =
                members.iter().map(|m| rt.block_on(status_of(m.name, &m.client))).collect();
            println!("{}", line.join(" | "));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("stopping");
    for m in &mut members {
        if let Some(c) = m.child.as_mut() {
            terminate(c);
        }
        let _ = std::fs::remove_file(&m.pid_file);
    }
    ExitCode::SUCCESS
}

async fn status_of(name: &str, ep: &str) -> String {
    let r = async {
        let ch = tonic::transport::Endpoint::from_shared(ep.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        MaintenanceClient::new(ch)
            .status(pb::StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|e| e.message().to_string())
    };
    match r.await {
        Ok(s) => {
            let id = s.header.as_ref().map_or(0, |h| h.member_id);
            let role = if s.leader == id && id != 0 { "leader" } else { "follower" };
            format!(
                "{name} {role} term {} commit {} applied {}",
                s.raft_term, s.raft_index, s.raft_applied_index
            )
        }
        Err(_) => format!("{name} down"),
    }
}

mod signal_hook_consts {
    pub const SIGINT: i32 = 2;
    pub const SIGTERM: i32 = 15;
}

/// Sets `flag` when `sig` arrives.
fn signal_flag(
    sig: i32,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<()> {
    signal_hook::flag::register(sig, flag).map(|_| ())
}
