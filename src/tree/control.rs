//! Signals through the tree: a write to `/<node>/<pid>/ctl` (or
//! `/pid/<pid>@<node>/ctl`) goes down to the node as the writer's own uid,
//! administrators included, through the process the fid is pinned to
//! (`<pid>.<start>` on agents that resolve it), so the node's kernel
//! decides whom they may signal and a reused pid is never signalled.
//! The aggregator only narrows: users who are not administrators may send
//! only `[control] user_signals` where the site lists them. Every signal,
//! sent or refused, is logged under the `gproc::audit` target.

use std::sync::Arc;

use bytes::Bytes;

use crate::client::OpenMode;
use crate::client::pool::User;
use crate::format::ctl;
use crate::server::{FsError, FsResult, Identity};
use crate::view::View;

use super::Tree;
use super::members::Member;
use super::pin::{Pin, wire_path};
use super::reads::pool_err;

impl Tree {
    /// Sends the command in `data` to the process of `node` whose `ctl` is
    /// `path`, as `who`.
    pub(super) async fn signal(
        &self,
        view: &View,
        who: &Identity,
        node: &Member,
        path: &str,
        pin: Option<Pin>,
        data: Bytes,
    ) -> FsResult<u32> {
        let audit = |signal: &str, result: &str| {
            tracing::info!(
                target: "gproc::audit",
                uid = who.uid,
                user = who.name.as_deref().unwrap_or("?"),
                proof = ?who.proof,
                admin = view.admin,
                node = %node.name,
                process = path.trim_end_matches("/ctl").trim_start_matches('/'),
                start = pin.map_or(0, |p| p.start),
                signal,
                result,
                "signal"
            );
        };
        let command = match ctl::Command::parse(&data) {
            Ok(c) => c,
            Err(e) => {
                audit("-", &format!("refused: {e}"));
                return Err(FsError::INVAL.with(e.to_string()));
            }
        };
        let name = command.signal_name();
        if !view.admin
            && let Some(allowed) = &self.control.user_signals
            && !allowed.contains(&command.signal)
        {
            audit(&name, "refused: not among [control] user_signals");
            return Err(FsError::new(crate::proto::errno::EPERM).with(format!(
                "{name}: users may send only {}",
                allowed
                    .iter()
                    .map(|s| ctl::signal_name(*s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Always as the writer, never the service identity: an
        // administrator's signal is theirs for the node's kernel to judge.
        let writer = User {
            uid: who.uid,
            name: Arc::from(who.name.clone().unwrap_or_else(|| who.uid.to_string())),
        };
        let wire = node.wire(&wire_path(path, pin)).into_owned();
        let text = command.to_string();
        let sent = self
            .pool
            .with_node_as(&node.via, Some(&writer), |root| async move {
                let mut f = root.walk(&wire).await?;
                f.open(OpenMode::Write).await?;
                let r = f.write_at(0, text.as_bytes()).await;
                let _ = f.clunk().await;
                r
            })
            .await;
        match sent {
            Ok(_) => {
                audit(&name, "sent");
                u32::try_from(data.len()).map_err(|_| FsError::INVAL)
            }
            Err(e) => {
                let e = pool_err(e);
                audit(
                    &name,
                    &format!("refused: {}", crate::proto::errno::to_string(e.errno)),
                );
                Err(e)
            }
        }
    }
}
