//! Cache rule tests with a controllable node: time is tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::config::{ByteSize, CacheRule};

#[derive(Clone, Debug, PartialEq)]
struct Val(String);

/// The test kind: a file's text.
struct Text;

impl Kind for Text {
    type Value = Val;
    fn weight(v: &Val) -> usize {
        v.0.len()
    }
}

/// The per-node test kind: a node's summary, in a slot of its own.
#[derive(Clone)]
struct PerNode;

impl Kind for PerNode {
    type Value = Val;
    fn weight(v: &Val) -> usize {
        v.0.len()
    }
    const PER_NODE: bool = true;
}

fn policy(rules: &[(&str, Ttl, Option<Duration>)]) -> CachePolicy {
    CachePolicy {
        default_ttl: Ttl::For(Duration::from_secs(1)),
        max_bytes: ByteSize(1 << 20),
        max_entry_bytes: ByteSize(1000),
        rules: rules
            .iter()
            .map(|(p, t, s)| CacheRule::new(p, *t, *s).unwrap())
            .collect(),
    }
}

/// A node file whose content changes on demand and counts its reads.
#[derive(Clone, Default)]
struct Node {
    version: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    fn load(&self) -> impl std::future::Future<Output = Result<Val, String>> + Send + 'static {
        let n = self.clone();
        async move {
            n.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            if n.fail.load(Ordering::SeqCst) {
                return Err("node down".to_string());
            }
            Ok(Val(format!("v{}", n.version.load(Ordering::SeqCst))))
        }
    }
}

fn key(path: &str) -> Key<Text> {
    Key {
        kind: Text,
        node: 1,
        path: path.into(),
        user: None,
    }
}

fn per_node(path: &str) -> Key<PerNode> {
    Key {
        kind: PerNode,
        node: 1,
        path: path.into(),
        user: None,
    }
}

/// Runs a rule's test over the byte-bounded store and over per-node
/// slots: the rules are the same for both.
macro_rules! both_stores {
    ($body:ident) => {
        $body(key).await;
        $body(per_node).await;
    };
}

#[tokio::test(start_paused = true)]
async fn cached_path_serves_cached_bytes_until_its_ttl_ends() {
    both_stores!(ttl_ends);
}

async fn ttl_ends<K: Kind<Value = Val>>(key: fn(&str) -> Key<K>) {
    let c = Cache::new(policy(&[(
        "/*/status",
        Ttl::For(Duration::from_secs(2)),
        None,
    )]));
    let n = Node::default();
    let (v, f) = c.get_or_load(key("/1/status"), || n.load()).await.unwrap();
    assert_eq!((v, f), (Val("v0".into()), Freshness::Loaded));
    n.version.store(1, Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(1500)).await;
    let (v, f) = c.get_or_load(key("/1/status"), || n.load()).await.unwrap();
    assert_eq!((v, f), (Val("v0".into()), Freshness::Fresh));
    tokio::time::advance(Duration::from_millis(600)).await;
    let (v, _) = c.get_or_load(key("/1/status"), || n.load()).await.unwrap();
    assert_eq!(v, Val("v1".into()));
    assert_eq!(n.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn never_path_always_reads_the_node() {
    let c = Cache::new(policy(&[("/*/maps", Ttl::Never, None)]));
    let n = Node::default();
    for i in 0..3 {
        n.version.store(i, Ordering::SeqCst);
        let (v, f) = c.get_or_load(key("/1/maps"), || n.load()).await.unwrap();
        assert_eq!((v, f), (Val(format!("v{i}")), Freshness::Loaded));
    }
    assert_eq!(n.reads.load(Ordering::SeqCst), 3);
    assert_eq!(c.stats().bypass.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_readers_cause_one_node_read() {
    both_stores!(one_read);
}

async fn one_read<K: Kind<Value = Val>>(key: fn(&str) -> Key<K>) {
    let c = Cache::new(policy(&[]));
    let n = Node::default();
    for fail in [true, false] {
        n.fail.store(fail, Ordering::SeqCst);
        n.reads.store(0, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, n) = (c.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_load(key("/loadavg"), || n.load())
                    .await
                    .map(|r| r.0)
            }));
        }
        for t in tasks {
            let want = if fail {
                Err("node down".to_string())
            } else {
                Ok(Val("v0".into()))
            };
            assert_eq!(t.await.unwrap(), want);
        }
        // Waiters take the one load's value, or its error.
        assert_eq!(n.reads.load(Ordering::SeqCst), 1, "fail: {fail}");
    }
    assert_eq!(c.stats().node_reads.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_cached() {
    both_stores!(not_cached);
}

async fn not_cached<K: Kind<Value = Val>>(key: fn(&str) -> Key<K>) {
    let c = Cache::new(policy(&[]));
    let n = Node::default();
    n.fail.store(true, Ordering::SeqCst);
    assert!(c.get_or_load(key("/uptime"), || n.load()).await.is_err());
    n.fail.store(false, Ordering::SeqCst);
    assert!(c.get_or_load(key("/uptime"), || n.load()).await.is_ok());
    assert_eq!(n.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_rule_serves_old_data_while_refreshing_and_while_the_node_is_down() {
    both_stores!(stale_served);
}

async fn stale_served<K: Kind<Value = Val>>(key: fn(&str) -> Key<K>) {
    let c = Cache::new(policy(&[(
        "/*/stat",
        Ttl::For(Duration::from_secs(1)),
        Some(Duration::from_secs(30)),
    )]));
    let n = Node::default();
    c.get_or_load(key("/1/stat"), || n.load()).await.unwrap();
    n.fail.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let (v, f) = c.get_or_load(key("/1/stat"), || n.load()).await.unwrap();
    assert_eq!(v, Val("v0".into()));
    assert!(matches!(f, Freshness::Stale(age) if age >= Duration::from_secs(5)));
    // The node comes back: the next stale read triggers a refresh that
    // replaces the entry.
    n.fail.store(false, Ordering::SeqCst);
    n.version.store(7, Ordering::SeqCst);
    c.get_or_load(key("/1/stat"), || n.load()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (v, f) = c.get_or_load(key("/1/stat"), || n.load()).await.unwrap();
    assert_eq!((v, f), (Val("v7".into()), Freshness::Fresh));
    // Past TTL + stale, the entry is not served.
    n.fail.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(40)).await;
    assert!(c.get_or_load(key("/1/stat"), || n.load()).await.is_err());
}

#[tokio::test]
async fn the_byte_bound_holds() {
    let mut p = policy(&[]);
    p.default_ttl = Ttl::For(Duration::from_secs(60));
    p.max_bytes = ByteSize(10_000);
    let c = Cache::new(p);
    for i in 0..1000 {
        let v = Val("x".repeat(500));
        c.get_or_load(key(&format!("/{i}/status")), || async move {
            Ok::<_, String>(v)
        })
        .await
        .unwrap();
    }
    c.sync().await;
    let (_, bytes) = c.usage();
    assert!(
        bytes <= 10_000,
        "cache holds {bytes} bytes over a 10000 bound"
    );
}

#[tokio::test]
async fn entries_over_the_entry_bound_are_served_but_not_kept() {
    both_stores!(over_bound);
}

async fn over_bound<K: Kind<Value = Val>>(key: fn(&str) -> Key<K>) {
    let c = Cache::new(policy(&[]));
    let n = AtomicU64::new(0);
    for _ in 0..2 {
        let v = Val("y".repeat(5000));
        n.fetch_add(1, Ordering::SeqCst);
        let (got, f) = c
            .get_or_load(key("/big"), || async move { Ok::<_, String>(v) })
            .await
            .unwrap();
        assert_eq!((got.0.len(), f), (5000, Freshness::Loaded));
    }
    c.sync().await;
    assert_eq!(c.usage().0, 0);
}

/// Another kind at the same paths: a length, derived, not a node read.
#[derive(Clone)]
struct Len;

impl Kind for Len {
    type Value = usize;
    fn weight(_: &usize) -> usize {
        8
    }
    const NODE_READS: bool = false;
}

#[tokio::test(start_paused = true)]
async fn kinds_at_one_path_are_separate_entries_of_their_own_types() {
    let c = Cache::new(policy(&[]));
    let n = Node::default();
    let (v, _) = c.get_or_load(key("/1/stat"), || n.load()).await.unwrap();
    let len_key = Key {
        kind: Len,
        node: 1,
        path: "/1/stat".into(),
        user: None,
    };
    let (l, f) = c
        .get_or_load(len_key.clone(), || async { Ok::<_, String>(42) })
        .await
        .unwrap();
    assert_eq!((l, f), (42, Freshness::Loaded));
    let (l, f) = c
        .get_or_load(len_key, || async { Ok::<_, String>(0) })
        .await
        .unwrap();
    assert_eq!((l, f), (42, Freshness::Fresh));
    assert_eq!(
        c.get_or_load(key("/1/stat"), || n.load()).await.unwrap().0,
        v
    );
    // Only the node kind's lookups count as node reads and hits.
    assert_eq!(c.stats().node_reads.load(Ordering::Relaxed), 1);
    assert_eq!(c.stats().hits.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn forgetting_a_node_drops_its_entries_of_every_kind() {
    let c = Cache::new(policy(&[]));
    let n = Node::default();
    for node in [1, 2] {
        let k = Key {
            kind: Text,
            node,
            path: "/stat".into(),
            user: None,
        };
        c.get_or_load(k, || n.load()).await.unwrap();
        let k = Key {
            kind: Len,
            node,
            path: "/stat".into(),
            user: None,
        };
        c.get_or_load(k, || async { Ok::<_, String>(1) })
            .await
            .unwrap();
    }
    c.sync().await;
    assert_eq!(c.usage().0, 4);
    c.forget_node(1);
    c.sync().await;
    assert_eq!(c.usage().0, 2);
    let k = Key {
        kind: Text,
        node: 1,
        path: "/stat".into(),
        user: None,
    };
    let (_, f) = c.get_or_load(k, || n.load()).await.unwrap();
    assert_eq!(f, Freshness::Loaded);
}

/// Per-node slots are outside the byte bound (one value per node, which
/// every table needs), count in the usage, are forgotten with their node,
/// and do not hold a node's old value while its next one is read.
#[tokio::test(start_paused = true)]
async fn per_node_slots_hold_one_value_per_node() {
    let mut p = policy(&[]);
    p.max_bytes = ByteSize(10_000);
    let c = Cache::new(p);
    for node in 0..100 {
        let k = Key {
            node,
            ..per_node("/.gproc/ps")
        };
        let v = Val("s".repeat(900));
        c.get_or_load(k, || async move { Ok::<_, String>(v) })
            .await
            .unwrap();
    }
    c.sync().await;
    let (entries, bytes) = c.usage();
    assert_eq!(entries, 100);
    assert!(bytes >= 90_000, "{bytes}");
    // Expired: the next load does not hold the old value meanwhile.
    tokio::time::advance(Duration::from_secs(2)).await;
    let k = per_node("/.gproc/ps");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let c2 = c.clone();
    let k2 = k.clone();
    let load = tokio::spawn(async move {
        c2.get_or_load(k2, || async move {
            let _ = rx.await;
            Ok::<_, String>(Val("new".into()))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        c.peek(&k).await,
        None,
        "the old value is dropped before the load"
    );
    let _ = tx.send(());
    assert_eq!(load.await.unwrap().unwrap().0, Val("new".into()));
    assert_eq!(c.peek(&k).await, Some(Val("new".into())));
    c.forget_node(1);
    assert_eq!(c.peek(&k).await, None);
    assert_eq!(c.usage().0, 99);
    // Past TTL + stale + 1 s, values are dropped at the next sweep (made
    // by any lookup), as the store's are.
    tokio::time::advance(Duration::from_secs(3)).await;
    c.get_or_load(per_node("/.gproc/ps"), || async {
        Ok::<_, String>(Val("x".into()))
    })
    .await
    .unwrap();
    assert_eq!(c.usage().0, 1);
}
