//! `flotilla bench`: a load generator speaking etcd's v3 API, so that the same run measures
//! Flotilla or etcd. Closed loop: `clients` concurrent requests spread over `conns` gRPC
//! connections and over the endpoints; latencies into an HDR histogram; a progress bar while
//! it runs; throughput and percentiles at the end, as text or JSON.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_server::pb;
use flotilla_server::rpc::k_v_client::KVClient;
use hdrhistogram::Histogram;

/// The options of one run.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Client endpoints, comma-separated.
    #[arg(
        long,
        default_value = "http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379"
    )]
    endpoints: String,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// gRPC connections (requests are spread over them).
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    key_space: u64,
    /// Share of reads (linearizable gets), 0.0 to 1.0; the rest are puts.
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Serve reads locally (possibly stale) instead of linearizably.
    #[arg(long)]
    serializable: bool,
    /// Run this long (seconds), unless --total is given.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Run this many operations instead of a duration.
    #[arg(long)]
    total: Option<u64>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress bar (for scripts).
    #[arg(long)]
    quiet: bool,
    /// `name:password` to authenticate as, when the cluster has auth enabled.
    #[arg(long, env = "FLOTILLA_USER")]
    user: Option<String>,
    /// Use tonic's client for plaintext endpoints too (by default they get the lean h2
    /// client); to compare the two generators' CPU cost.
    #[arg(long)]
    tonic_client: bool,
    #[command(flatten)]
    tls: crate::TlsFiles,
}

struct Shared {
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Runs the benchmark; returns an error message if no endpoint could be reached.
///
/// The load runs on one thread per core, each with its own single-threaded tokio runtime
/// owning a share of the connections and of the clients: a request, its connection and its
/// answer never cross threads, so the generator adds no cross-thread wake-up (a futex
/// wake-up costs tens of microseconds on a VM that halts idle vCPUs) to the latency it
/// measures, and spends less CPU beside the system under test.
pub async fn run(a: BenchArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&a.read_ratio) || a.clients == 0 || a.conns == 0 || a.key_space == 0 {
        return Err(
            "--read-ratio must be in [0, 1]; --clients, --conns, --key-space positive".into()
        );
    }
    let endpoints = crate::parse_endpoints(&a.endpoints);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(a.conns).min(a.clients);
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for t in 0..threads {
        // Connection i belongs to thread i % threads; client c uses connection c % conns.
        let conns: Vec<(usize, String)> = (t..a.conns)
            .step_by(threads)
            .map(|i| (i, endpoints[i % endpoints.len()].clone()))
            .collect();
        let (shared, a, ready_tx, mut go_rx) =
            (shared.clone(), a.clone(), ready_tx.clone(), go_rx.clone());
        let worker = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || -> Histogram<u64> {
                let mut h = new_histogram();
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return h;
                    }
                };
                rt.block_on(async {
                    let mut channels = Vec::new();
                    for (i, ep) in &conns {
                        match Kv::connect(ep, &a.tls, a.user.as_deref(), a.tonic_client).await {
                            Ok(conn) => channels.push((*i, conn)),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    drop(ready_tx);
                    if go_rx.wait_for(|go| *go).await.is_err() {
                        return;
                    }
                    let value: bytes::Bytes = vec![b'x'; a.value_size].into();
                    let mut clients = tokio::task::JoinSet::new();
                    for c in 0..a.clients {
                        let Some((_, kv)) = channels.iter().find(|(i, _)| c % a.conns == *i) else {
                            continue; // another thread's client
                        };
                        let (kv, value, a, shared) =
                            (kv.clone(), value.clone(), a.clone(), shared.clone());
                        clients.spawn(client(c, kv, value, a, shared));
                    }
                    while let Some(r) = clients.join_next().await {
                        if let Ok(ch) = r {
                            let _ = h.add(ch);
                        }
                    }
                });
                h
            })
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        workers.push(worker);
    }
    drop(ready_tx);
    let mut failure = None;
    while let Some(r) = ready_rx.recv().await {
        if let Err(e) = r {
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        drop(go_tx);
        for w in workers {
            let _ = w.join();
        }
        return Err(e);
    }
    let total = a.total;
    let start = Instant::now();
    let _ = go_tx.send(true);
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new(a.duration_secs),
        }
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = shared.done.load(Ordering::Relaxed);
        // Failed operations count towards --total, or a run whose every request fails
        // (refused by auth, say) would never end.
        let attempted = done + shared.errors.load(Ordering::Relaxed);
        let secs = start.elapsed().as_secs_f64();
        bar.set_message(format!("{:.0} ops/s", done as f64 / secs.max(1e-9)));
        match total {
            Some(t) => {
                bar.set_position(attempted.min(t));
                if attempted >= t {
                    break;
                }
            }
            None => {
                bar.set_position(secs as u64);
                if secs >= a.duration_secs as f64 {
                    break;
                }
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut h = new_histogram();
    let joined = tokio::task::spawn_blocking(move || {
        workers.into_iter().filter_map(|w| w.join().ok()).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for th in joined {
        let _ = h.add(th);
    }
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let done = h.len();
    let errors = shared.errors.load(Ordering::Relaxed);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let throughput = done as f64 / secs;
    if a.json {
        println!(
            "{{\"clients\":{},\"conns\":{},\"value_size\":{},\"read_ratio\":{},\"ops\":{done},\"errors\":{errors},\"seconds\":{secs:.3},\"throughput\":{throughput:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}}}",
            a.clients, a.conns, a.value_size, a.read_ratio,
            ms(0.5), ms(0.9), ms(0.99), ms(0.999), h.max() as f64 / 1000.0
        );
    } else {
        println!("{done} operations in {secs:.2} s ({errors} errors): {throughput:.0} ops/s");
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        );
    }
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// One connection of the load generator, with the token of `--user` if given (added to
/// each request by the client loop: no interceptor on the path when there is none).
#[derive(Clone)]
enum Kv {
    /// Plaintext endpoints: unary calls straight over h2 ([`crate::h2grpc`]).
    Lean(crate::h2grpc::Conn, Option<String>),
    /// TLS endpoints: tonic.
    Tonic(KVClient<tonic::transport::Channel>, Option<tonic::metadata::AsciiMetadataValue>),
}

impl Kv {
    async fn connect(
        ep: &str,
        tls: &crate::TlsFiles,
        user: Option<&str>,
        tonic_client: bool,
    ) -> Result<Kv, String> {
        let lean = !tonic_client && !ep.starts_with("https://");
        // A tonic connection only where it is used: for the calls, or to authenticate.
        let ch = if !lean || user.is_some() {
            let ch = crate::endpoint(tls, ep)?
                .connect_timeout(Duration::from_secs(3))
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("{ep}: {e}"))?;
            Some(ch)
        } else {
            None
        };
        let token = match (user, &ch) {
            (Some(u), Some(ch)) => {
                crate::authenticate(ch.clone(), u)
                    .await
                    .map_err(|s| format!("{ep}: {}", s.message()))?
                    .0
            }
            _ => None,
        };
        match ch {
            Some(ch) if !lean => Ok(Kv::Tonic(KVClient::new(ch), token)),
            _ => {
                let token = token.map(|t| t.to_str().map(str::to_string)).transpose();
                let token = token.map_err(|e| format!("{ep}: token: {e}"))?;
                Ok(Kv::Lean(crate::h2grpc::connect(ep).await?, token))
            }
        }
    }

    /// A put or a range; whether it succeeded.
    async fn call(&mut self, op: Op) -> bool {
        match (self, op) {
            (Kv::Lean(c, token), Op::Put(req)) => c
                .unary::<pb::PutResponse>("/etcdserverpb.KV/Put", &req, token.as_deref())
                .await
                .is_ok(),
            (Kv::Lean(c, token), Op::Range(req)) => c
                .unary::<pb::RangeResponse>("/etcdserverpb.KV/Range", &req, token.as_deref())
                .await
                .is_ok(),
            (Kv::Tonic(kv, token), Op::Put(req)) => kv.put(with_token(req, token)).await.is_ok(),
            (Kv::Tonic(kv, token), Op::Range(req)) => {
                kv.range(with_token(req, token)).await.is_ok()
            }
        }
    }
}

/// What one request of the load is.
enum Op {
    Put(pb::PutRequest),
    Range(pb::RangeRequest),
}

/// `msg` as a request, with the auth token if there is one (etcd's `token` metadata).
fn with_token<T>(msg: T, token: &Option<tonic::metadata::AsciiMetadataValue>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.clone());
    }
    r
}

/// One closed-loop client: a request, its answer, the next request.
async fn client(
    c: usize,
    mut kv: Kv,
    value: bytes::Bytes,
    a: BenchArgs,
    shared: Arc<Shared>,
) -> Histogram<u64> {
    let mut h = new_histogram();
    // A small per-client generator (SplitMix64): keys and the read/write mix.
    let mut x = 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(c as u64 + 1);
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(t) = a.total {
            let attempted =
                shared.done.load(Ordering::Relaxed) + shared.errors.load(Ordering::Relaxed);
            if attempted >= t {
                break;
            }
        }
        let key: bytes::Bytes = format!("bench/{:08}", next() % a.key_space).into();
        let read = (next() % 1_000_000) as f64 / 1_000_000.0 < a.read_ratio;
        let t0 = Instant::now();
        let op = if read {
            Op::Range(pb::RangeRequest { key, serializable: a.serializable, ..Default::default() })
        } else {
            Op::Put(pb::PutRequest { key, value: value.clone(), ..Default::default() })
        };
        let ok = kv.call(op).await;
        if ok {
            let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
            shared.done.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    h
}
