//! etcd's Lock service (`v3lockpb.Lock`) against real `flotilla serve` processes: lockers
//! at different members queue in order, and the lock passes on Unlock, on the end of the
//! holder's lease, and when a waiting client goes away.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, eventually, put, runtime};
use flotilla_server::pb;
use flotilla_server::rpc::k_v_client::KVClient;
use flotilla_server::rpc::lease_client::LeaseClient;
use flotilla_server::rpc::lock_client::LockClient;
use tonic::transport::Channel;

async fn channel(ep: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(ep.to_string()).unwrap().connect().await.unwrap()
}

async fn lock(ep: String, name: &'static str, lease: i64) -> Result<Vec<u8>, tonic::Status> {
    let req = pb::LockRequest { name: name.into(), lease };
    Ok(LockClient::new(channel(&ep).await).lock(req).await?.into_inner().key.to_vec())
}

async fn grant(ep: &str) -> i64 {
    let req = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    LeaseClient::new(channel(ep).await).lease_grant(req).await.unwrap().into_inner().id
}

/// The keys under `prefix`.
async fn keys(ep: &str, prefix: &str) -> Vec<Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let req = pb::RangeRequest {
        key: prefix.to_string().into(),
        range_end: end.into(),
        keys_only: true,
        ..Default::default()
    };
    let r = KVClient::new(channel(ep).await).range(req).await.unwrap().into_inner();
    r.kvs.into_iter().map(|kv| kv.key.to_vec()).collect()
}

#[test]
fn lockers_queue_and_the_lock_passes_on_unlock_lease_end_and_a_client_gone() {
    let dir = tempfile::tempdir().unwrap();
    let servers = cluster(dir.path(), 10_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&refs, "ready", "yes", deadline));
    let count =
        |n: usize| {
            eventually(deadline, &format!("{n} keys under job/"), Duration::from_millis(20), || {
                match rt.block_on(keys(&eps[0], "job/")) {
                    k if k.len() == n => Ok(k),
                    k => Err(k),
                }
            })
        };

    let (la, lb) = rt.block_on(async { (grant(&eps[0]).await, grant(&eps[1]).await) });
    let a = rt.block_on(lock(eps[0].clone(), "job", la)).unwrap();
    assert_eq!(a, format!("job/{la:x}").into_bytes());
    // The same lease locks again at once: its key holds the lock already.
    assert_eq!(rt.block_on(lock(eps[2].clone(), "job", la)).unwrap(), a);

    // B (at another member), then C (no lease: one of 60 s is granted) queue behind A.
    let b = rt.spawn(lock(eps[1].clone(), "job", lb));
    count(2);
    let c = rt.spawn(lock(eps[2].clone(), "job", 0));
    count(3);
    // A lock granted while A holds it would show here; none is.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!b.is_finished() && !c.is_finished(), "a waiter got the lock A holds");

    // Unlock at yet another member: B gets it, C still waits.
    rt.block_on(async {
        let mut l = LockClient::new(channel(&eps[2]).await);
        l.unlock(pb::UnlockRequest { key: a.clone().into() }).await.unwrap();
    });
    let bk = rt.block_on(b).unwrap().unwrap();
    assert_eq!(bk, format!("job/{lb:x}").into_bytes());
    assert!(!c.is_finished(), "C got the lock B holds");

    // B's lease ends (revoked here): its key goes with it and C gets the lock.
    rt.block_on(async {
        let mut l = LeaseClient::new(channel(&eps[0]).await);
        l.lease_revoke(pb::LeaseRevokeRequest { id: lb }).await.unwrap();
    });
    let ck = rt.block_on(c).unwrap().unwrap();
    assert!(ck.starts_with(b"job/") && ck != a && ck != bk, "{ck:?}");

    // D waits behind C; its client goes away: its key is deleted, so it blocks no one.
    let d = rt.spawn(lock(eps[1].clone(), "job", 0));
    count(2);
    d.abort();
    let left = count(1);
    assert_eq!(left, vec![ck.clone()]);

    // A lease that does not exist: refused, nothing left behind.
    let e = rt.block_on(lock(eps[0].clone(), "job", 0x7777)).unwrap_err();
    assert_eq!(e.message(), "etcdserver: requested lease not found", "{e:?}");
    assert_eq!(count(1), vec![ck]);
}
