//! No browser payload carries a buyer id, an order id, or a coordinate
//! finer than the coarsening grid.

use std::collections::HashSet;

use futures_util::StreamExt;
use livemap_engine::arcs::is_coarsened;
use livemap_events::demo::{DemoMix, Generator};
use tokio_tungstenite::tungstenite::Message;

use crate::util::{eventually, TestServer, PATIENCE};

#[tokio::test]
async fn browser_payloads_carry_no_personal_data() {
    let server = TestServer::start(|c| c.demo_seed = 99).await;

    // The same seed generates the same events the demo source is sending:
    // collect their personal fields to search the payloads for.
    let mut generator = Generator::new(99, DemoMix::default());
    let mut secrets: HashSet<String> = HashSet::new();
    let mut buf = Vec::new();
    for i in 0..50_000 {
        generator.next_message(1_795_788_000_000 + i, &mut buf);
        if let Ok(e) = serde_json::from_slice::<livemap_events::CheckoutEvent>(&buf) {
            secrets.insert(e.buyer.id.into_owned());
            secrets.insert(e.order.id.into_owned());
        }
    }
    assert!(secrets.len() > 1_000);

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connects");
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut arcs_seen = 0;
    while arcs_seen < 200 {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("frame")
            .expect("open")
            .expect("ok");
        let Message::Binary(bytes) = msg else {
            continue;
        };
        let snap = livemap_wire::decode(&bytes).expect("snapshot");
        for a in &snap.arcs {
            assert!(
                is_coarsened(a.from.lat, a.from.lon),
                "shop point {:?} is not on the grid",
                a.from
            );
            assert!(
                is_coarsened(a.to.lat, a.to.lon),
                "buyer point {:?} is not on the grid",
                a.to
            );
        }
        arcs_seen += snap.arcs.len();
        payloads.push(bytes.to_vec());
    }
    let json = eventually("arcs in the JSON", || async {
        let s = server.snapshot().await;
        (!s["arcs"].as_array()?.is_empty()).then_some(s)
    })
    .await;
    for arc in json["arcs"].as_array().expect("arcs") {
        for end in ["from", "to"] {
            let lat = arc[end][0].as_f64().expect("lat") as f32;
            let lon = arc[end][1].as_f64().expect("lon") as f32;
            assert!(
                is_coarsened(lat, lon),
                "{end} {lat},{lon} is not on the grid"
            );
        }
    }
    payloads.push(json.to_string().into_bytes());

    for payload in &payloads {
        let text = String::from_utf8_lossy(payload);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "payload leaks {secret}");
        }
    }
    let keys: HashSet<String> = json.as_object().expect("object").keys().cloned().collect();
    for forbidden in ["buyer", "buyer_id", "order_id", "orders_detail"] {
        assert!(!keys.contains(forbidden));
    }
}
