//! Generates the gRPC service stubs (server and client) for the etcd v3 services Flotilla
//! serves, from the hand-declared messages in `src/pb.rs`: no `.proto` files and no `protoc`.

fn build(
    name: &str,
    route: &str,
    input: &str,
    output: &str,
    stream: Streams,
) -> tonic_build::manual::Method {
    let b = tonic_build::manual::Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("crate::pb::{input}"))
        .output_type(format!("crate::pb::{output}"))
        .codec_path("crate::codec::LeanCodec");
    match stream {
        Streams::None => b.build(),
        Streams::Server => b.server_streaming().build(),
        Streams::Both => b.client_streaming().server_streaming().build(),
    }
}

/// Which sides of a call stream.
#[derive(Clone, Copy)]
enum Streams {
    None,
    Server,
    Both,
}

fn method(name: &str, route: &str, input: &str, output: &str) -> tonic_build::manual::Method {
    build(name, route, input, output, Streams::None)
}

fn streaming(name: &str, route: &str, input: &str, output: &str) -> tonic_build::manual::Method {
    build(name, route, input, output, Streams::Server)
}

fn service(name: &str, methods: Vec<tonic_build::manual::Method>) -> tonic_build::manual::Service {
    service_in("etcdserverpb", name, methods)
}

fn service_in(
    package: &str,
    name: &str,
    methods: Vec<tonic_build::manual::Method>,
) -> tonic_build::manual::Service {
    let mut b = tonic_build::manual::Service::builder().name(name).package(package);
    for m in methods {
        b = b.method(m);
    }
    b.build()
}

fn main() {
    let kv = service(
        "KV",
        vec![
            method("range", "Range", "RangeRequest", "RangeResponse"),
            method("put", "Put", "PutRequest", "PutResponse"),
            method("delete_range", "DeleteRange", "DeleteRangeRequest", "DeleteRangeResponse"),
            method("txn", "Txn", "TxnRequest", "TxnResponse"),
            method("compact", "Compact", "CompactionRequest", "CompactionResponse"),
        ],
    );
    let cluster = service(
        "Cluster",
        vec![
            method("member_add", "MemberAdd", "MemberAddRequest", "MemberAddResponse"),
            method("member_remove", "MemberRemove", "MemberRemoveRequest", "MemberRemoveResponse"),
            method("member_list", "MemberList", "MemberListRequest", "MemberListResponse"),
            method("member_update", "MemberUpdate", "MemberUpdateRequest", "MemberUpdateResponse"),
            method(
                "member_promote",
                "MemberPromote",
                "MemberPromoteRequest",
                "MemberPromoteResponse",
            ),
        ],
    );
    let maintenance = service(
        "Maintenance",
        vec![
            method("status", "Status", "StatusRequest", "StatusResponse"),
            method("move_leader", "MoveLeader", "MoveLeaderRequest", "MoveLeaderResponse"),
            streaming("snapshot", "Snapshot", "SnapshotRequest", "SnapshotResponse"),
            method("hash", "Hash", "HashRequest", "HashResponse"),
            method("hash_kv", "HashKV", "HashKvRequest", "HashKvResponse"),
            method("defragment", "Defragment", "DefragmentRequest", "DefragmentResponse"),
            method("alarm", "Alarm", "AlarmRequest", "AlarmResponse"),
        ],
    );
    let watch = service(
        "Watch",
        vec![build("watch", "Watch", "WatchRequest", "WatchResponse", Streams::Both)],
    );
    let lease = service(
        "Lease",
        vec![
            method("lease_grant", "LeaseGrant", "LeaseGrantRequest", "LeaseGrantResponse"),
            method("lease_revoke", "LeaseRevoke", "LeaseRevokeRequest", "LeaseRevokeResponse"),
            build(
                "lease_keep_alive",
                "LeaseKeepAlive",
                "LeaseKeepAliveRequest",
                "LeaseKeepAliveResponse",
                Streams::Both,
            ),
            method(
                "lease_time_to_live",
                "LeaseTimeToLive",
                "LeaseTimeToLiveRequest",
                "LeaseTimeToLiveResponse",
            ),
            method("lease_leases", "LeaseLeases", "LeaseLeasesRequest", "LeaseLeasesResponse"),
        ],
    );
    let auth = service(
        "Auth",
        vec![
            method("auth_enable", "AuthEnable", "AuthEnableRequest", "AuthEnableResponse"),
            method("auth_disable", "AuthDisable", "AuthDisableRequest", "AuthDisableResponse"),
            method("auth_status", "AuthStatus", "AuthStatusRequest", "AuthStatusResponse"),
            method("authenticate", "Authenticate", "AuthenticateRequest", "AuthenticateResponse"),
            method("user_add", "UserAdd", "AuthUserAddRequest", "AuthUserAddResponse"),
            method("user_get", "UserGet", "AuthUserGetRequest", "AuthUserGetResponse"),
            method("user_list", "UserList", "AuthUserListRequest", "AuthUserListResponse"),
            method("user_delete", "UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse"),
            method(
                "user_change_password",
                "UserChangePassword",
                "AuthUserChangePasswordRequest",
                "AuthUserChangePasswordResponse",
            ),
            method(
                "user_grant_role",
                "UserGrantRole",
                "AuthUserGrantRoleRequest",
                "AuthUserGrantRoleResponse",
            ),
            method(
                "user_revoke_role",
                "UserRevokeRole",
                "AuthUserRevokeRoleRequest",
                "AuthUserRevokeRoleResponse",
            ),
            method("role_add", "RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse"),
            method("role_get", "RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse"),
            method("role_list", "RoleList", "AuthRoleListRequest", "AuthRoleListResponse"),
            method("role_delete", "RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse"),
            method(
                "role_grant_permission",
                "RoleGrantPermission",
                "AuthRoleGrantPermissionRequest",
                "AuthRoleGrantPermissionResponse",
            ),
            method(
                "role_revoke_permission",
                "RoleRevokePermission",
                "AuthRoleRevokePermissionRequest",
                "AuthRoleRevokePermissionResponse",
            ),
        ],
    );
    // etcd's Lock and Election services (their own packages, served beside the others).
    let lock = service_in(
        "v3lockpb",
        "Lock",
        vec![
            method("lock", "Lock", "LockRequest", "LockResponse"),
            method("unlock", "Unlock", "UnlockRequest", "UnlockResponse"),
        ],
    );
    let election = service_in(
        "v3electionpb",
        "Election",
        vec![
            method("campaign", "Campaign", "CampaignRequest", "CampaignResponse"),
            method("proclaim", "Proclaim", "ProclaimRequest", "ProclaimResponse"),
            method("leader", "Leader", "LeaderRequest", "LeaderResponse"),
            streaming("observe", "Observe", "LeaderRequest", "LeaderResponse"),
            method("resign", "Resign", "ResignRequest", "ResignResponse"),
        ],
    );
    tonic_build::manual::Builder::new().compile(&[
        kv,
        cluster,
        maintenance,
        watch,
        lease,
        auth,
        lock,
        election,
    ]);
}
