//! A simulated server: the Raft node, its disk, its state machine, and the driver loop that
//! executes each `Ready` in the documented order (send early messages; write; sync; send the
//! rest; apply; advance). The real Driver (issue 7's runtime) replaces this loop; the
//! simulator is built so that it can.

use std::collections::BTreeMap;

use flotilla_raft::{Ack, Config, Entry, EntryId, MemStorage, Message, Node, NodeId};

use crate::disk::Disk;
use crate::kv::Kv;

/// The part of a `Ready` that waits for its sync.
#[derive(Debug)]
pub struct InFlight {
    /// Answers, sent once durable.
    pub persisted_messages: Vec<Message>,
    /// Entries to apply.
    pub committed: Vec<Entry>,
    /// For `advance`.
    pub ack: Ack,
}

/// A pending client proposal: which client attempt waits for the entry at this index.
#[derive(Clone, Copy, Debug)]
pub struct Proposal {
    /// The entry the proposal became.
    pub entry: EntryId,
    /// The client.
    pub client: usize,
    /// Its attempt number.
    pub attempt: u64,
}

/// One simulated server.
#[derive(Debug)]
pub struct Host {
    /// Its id.
    pub id: NodeId,
    /// Its configuration.
    pub config: Config,
    /// The running node; `None` while crashed.
    pub node: Option<Node<MemStorage>>,
    /// Its disk.
    pub disk: Disk,
    /// A `Ready` waiting for its sync.
    pub inflight: Option<InFlight>,
    /// Bumped at every crash, so that events of a previous life are ignored.
    pub incarnation: u64,
    /// The state machine (volatile: rebuilt from the log after a restart).
    pub kv: Kv,
    /// Client proposals made here, by log index.
    pub proposals: BTreeMap<u64, Proposal>,
    /// The durable image to restart from, while crashed.
    pub image: Option<MemStorage>,
    /// The last vote this host wrote, to notice new votes.
    pub last_vote: Option<(flotilla_raft::Term, NodeId)>,
}

impl Host {
    /// A running host over a fresh disk.
    pub fn new(config: Config, store: MemStorage) -> Host {
        let node = Node::new(config.clone(), store.clone())
            .unwrap_or_else(|e| panic!("simulated node {} cannot start: {e}", config.id));
        Host {
            id: config.id,
            config,
            node: Some(node),
            disk: Disk::new(store),
            inflight: None,
            incarnation: 0,
            kv: Kv::default(),
            proposals: BTreeMap::new(),
            image: None,
            last_vote: None,
        }
    }

    /// Crash: everything volatile and everything not synced is lost.
    pub fn crash(&mut self) {
        self.node = None;
        self.inflight = None;
        self.incarnation += 1;
        self.kv = Kv::default();
        self.proposals.clear();
        self.image = Some(self.disk.crash());
    }

    /// Restart from the durable image; the state machine re-applies the log.
    pub fn restart(&mut self) {
        if let Some(image) = self.image.take() {
            let node = Node::new(self.config.clone(), image)
                .unwrap_or_else(|e| panic!("simulated node {} cannot restart: {e}", self.id));
            self.node = Some(node);
        }
    }

    /// The entry at `index` in this host's log (written, synced or not).
    pub fn entry_at(&self, index: u64) -> Option<EntryId> {
        use flotilla_raft::LogStore;
        let node = self.node.as_ref()?;
        let t = node.store().term(flotilla_raft::LogIndex(index)).ok()?;
        Some(EntryId::new(t, flotilla_raft::LogIndex(index)))
    }
}
