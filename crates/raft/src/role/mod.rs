//! Message handlers grouped by the role that runs them. All are `impl Raft` blocks: the state
//! lives in one type, its transitions are spread only over these files.

mod candidate;
mod follower;
mod leader;
mod snapshot;
