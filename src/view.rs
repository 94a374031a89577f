//! Views: what one identity may see of the cluster.
//!
//! An administrator sees everything. A user sees the nodes allotted to them
//! and, on those nodes, only processes whose real or effective uid is
//! theirs; node-wide files of their nodes are visible. Invisible things do
//! not exist for that user: the tree neither lists nor walks to them.

use std::collections::HashSet;
use std::sync::Arc;

/// One identity's view of the cluster.
#[derive(Debug, Clone)]
pub struct View {
    /// Sees everything.
    pub admin: bool,
    /// The user's uid (processes with this real or effective uid are theirs).
    pub uid: u32,
    /// Nodes the user may see; `None` means all (admins).
    pub nodes: Option<Arc<HashSet<String>>>,
}

impl View {
    /// The administrator's view: everything.
    pub fn admin() -> Arc<View> {
        Arc::new(View {
            admin: true,
            uid: 0,
            nodes: None,
        })
    }

    /// A user's view: their processes on `nodes`.
    pub fn user(uid: u32, nodes: HashSet<String>) -> Arc<View> {
        Arc::new(View {
            admin: false,
            uid,
            nodes: Some(Arc::new(nodes)),
        })
    }

    /// Whether the node exists for this view.
    pub fn sees_node(&self, name: &str) -> bool {
        self.admin || self.nodes.as_ref().is_none_or(|n| n.contains(name))
    }

    /// Whether a process with these uids exists for this view.
    pub fn sees_process(&self, ruid: u32, euid: u32) -> bool {
        self.admin || ruid == self.uid || euid == self.uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_see_their_nodes_and_processes_only() {
        let v = View::user(1000, ["n1".to_string()].into_iter().collect());
        assert!(v.sees_node("n1") && !v.sees_node("n2"));
        assert!(v.sees_process(1000, 0) && v.sees_process(0, 1000) && !v.sees_process(0, 0));
        let a = View::admin();
        assert!(a.sees_node("n2") && a.sees_process(0, 0));
    }
}
