//! etcd's Lock (`v3lockpb.Lock`) and Election (`v3electionpb.Election`) services against
//! real `flotilla serve` processes: lockers and candidates at different members queue in
//! order; the lock passes on Unlock, on the end of the holder's lease, and when a waiting
//! client goes away; a leader proclaims values that Leader and Observe show, and resigns.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, eventually, put, runtime};
use flotilla_server::pb;
use flotilla_server::rpc::election_client::ElectionClient;
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

/// A 3-member cluster that answers: its servers, client endpoints, a runtime, and the
/// deadline of the test's waits.
fn started(
    dir: &std::path::Path,
) -> (Vec<common::Server>, Vec<String>, tokio::runtime::Runtime, Instant) {
    let servers = cluster(dir, 10_000);
    let eps: Vec<String> = servers.iter().map(|s| s.client.clone()).collect();
    let refs: Vec<&str> = eps.iter().map(String::as_str).collect();
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(put(&refs, "ready", "yes", deadline));
    (servers, eps, rt, deadline)
}

#[test]
fn lockers_queue_and_the_lock_passes_on_unlock_lease_end_and_a_client_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (_servers, eps, rt, deadline) = started(dir.path());
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

async fn campaign(
    ep: String,
    lease: i64,
    value: &'static str,
) -> Result<pb::LeaderKey, tonic::Status> {
    let req = pb::CampaignRequest { name: "svc".into(), lease, value: value.into() };
    let r = ElectionClient::new(channel(&ep).await).campaign(req).await?.into_inner();
    Ok(r.leader.expect("a leader key"))
}

/// The next leader an Observe stream shows (within 20 s).
async fn next(seen: &mut tonic::Streaming<pb::LeaderResponse>) -> pb::KeyValue {
    let r = tokio::time::timeout(Duration::from_secs(20), seen.message()).await;
    r.expect("an observation in time").unwrap().expect("the stream goes on").kv.unwrap()
}

async fn leader_value(ep: &str) -> Result<Vec<u8>, tonic::Status> {
    let req = pb::LeaderRequest { name: "svc".into() };
    let r = ElectionClient::new(channel(ep).await).leader(req).await?.into_inner();
    Ok(r.kv.expect("the leader's key").value.to_vec())
}

#[test]
fn candidates_lead_in_turn_and_what_they_proclaim_is_observed() {
    let dir = tempfile::tempdir().unwrap();
    let (_servers, eps, rt, _) = started(dir.path());
    rt.block_on(async {
        let e = leader_value(&eps[1]).await.unwrap_err();
        assert_eq!(e.message(), "election: no leader");
        // Observed from the third member from before anyone campaigns.
        let mut observer = ElectionClient::new(channel(&eps[2]).await);
        let mut seen =
            observer.observe(pb::LeaderRequest { name: "svc".into() }).await.unwrap().into_inner();

        let (la, lb) = (grant(&eps[0]).await, grant(&eps[1]).await);
        let a = campaign(eps[0].clone(), la, "a-1").await.unwrap();
        assert_eq!(a.key, format!("svc/{la:x}").into_bytes());
        assert_eq!(next(&mut seen).await.value, b"a-1"[..]);
        assert_eq!(leader_value(&eps[1]).await.unwrap(), b"a-1");

        // The leader proclaims; a stale leader key (another create revision) may not.
        let mut el = ElectionClient::new(channel(&eps[1]).await);
        let proclaim = |leader: &pb::LeaderKey, value: &'static str| pb::ProclaimRequest {
            leader: Some(leader.clone()),
            value: value.into(),
        };
        el.proclaim(proclaim(&a, "a-2")).await.unwrap();
        assert_eq!(next(&mut seen).await.value, b"a-2"[..]);
        let stale = pb::LeaderKey { rev: a.rev + 1, ..a.clone() };
        let e = el.proclaim(proclaim(&stale, "no")).await.unwrap_err();
        assert_eq!(e.message(), "election: not leader");

        // B campaigns at another member and waits while A leads.
        let b = tokio::spawn(campaign(eps[1].clone(), lb, "b-1"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!b.is_finished(), "B leads while A does");
        assert_eq!(leader_value(&eps[0]).await.unwrap(), b"a-2");

        // A resigns: B leads, and the observer sees it.
        el.resign(pb::ResignRequest { leader: Some(a.clone()) }).await.unwrap();
        let bk = b.await.unwrap().unwrap();
        assert_eq!(bk.key, format!("svc/{lb:x}").into_bytes());
        let kv = next(&mut seen).await;
        assert_eq!((kv.key.to_vec(), kv.value.to_vec()), (bk.key.to_vec(), b"b-1".to_vec()));
        // A no longer leads; its resign again is no error.
        let e = el.proclaim(proclaim(&a, "a-3")).await.unwrap_err();
        assert_eq!(e.message(), "election: not leader");
        el.resign(pb::ResignRequest { leader: Some(a) }).await.unwrap();
        let e = el.resign(pb::ResignRequest { leader: None }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(leader_value(&eps[2]).await.unwrap(), b"b-1");
    });
}
