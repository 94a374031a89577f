//! Many simulated nodes in one process: 2,000 start, and 500 of them
//! serve connections held open at the same time. What a node costs in
//! memory is measured by `gproc bench cluster` (never asserted here).

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use gproc::client::{Client, ClientOptions};
use gproc::sim::{SimCluster, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_nodes_start_and_serve_concurrent_connections() {
    const N: usize = 2000;
    const CONNECTED: usize = 500;
    let cluster = SimCluster::start(SimOptions {
        nodes: N,
        base_port: 0,
        first_address: Ipv4Addr::new(127, 5, 0, 1),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(cluster.nodes().len(), N);
    // One connection (and a file read) on CONNECTED nodes at once, kept
    // open together: every node answers with its own loadavg.
    let nodes = cluster.nodes()[..CONNECTED].to_vec();
    let clients: Vec<_> = tokio::time::timeout(
        Duration::from_secs(30),
        futures::stream::iter(nodes)
            .map(|n| async move {
                let c = Client::connect(&n.address(), ClientOptions::default())
                    .await
                    .unwrap();
                let root = c.attach("root", "/proc", Some(0)).await.unwrap();
                let load = root.read_all("loadavg").await.unwrap();
                (c, root, load)
            })
            .buffer_unordered(64)
            .collect(),
    )
    .await
    .unwrap();
    assert_eq!(clients.len(), CONNECTED);
    for (_, _, load) in &clients {
        let text = String::from_utf8_lossy(load);
        assert_eq!(text.split_whitespace().count(), 5, "{text:?}");
    }
    drop(clients);
    cluster.shutdown().await;
}
