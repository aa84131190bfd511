//! Poll votes end to end against the in-process emulator: the account sends a poll, a phone
//! votes, changes its vote and withdraws it; each vote is opened with the poll's secret,
//! counted on the poll in history, and announced as `poll_vote`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/ws.rs"]
mod ws;

use harness::{Running, T, call};
use serde_json::{Value, json};
use wa_client::Jid;
use ws::next_ws;

const ME: &str = "15550184000";
const ERIN: &str = "15550184001";

fn counts(message: &Value) -> Vec<(String, i64)> {
    message["poll_results"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["option"].as_str().unwrap().to_owned(), c["votes"].as_i64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phones_votes_are_opened_counted_and_announced() {
    let srv = Running::start(184).await;
    let a = srv.addr;
    let erin = srv.emu.create_account(ERIN, "Erin").unwrap();
    let key = srv.tenant("polls").await;
    let (s, v) = call(
        a,
        "POST",
        "/api/v1/accounts",
        &key,
        Some(json!({ "name": "Polls", "phone": format!("+{ME}") })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let acc = v["id"].as_str().unwrap().to_owned();
    let url = format!("ws://{a}/api/v1/events/ws?api_key={key}");
    let (mut ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap();
    next_ws(&mut ws, "ready", |v| v["event"] == "ready").await;
    let (s, v) = call(a, "POST", &format!("/api/v1/accounts/{acc}/connect"), &key, None).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = call(a, "POST", &format!("/api/v1/emulator/accounts/{acc}/scan"), &key, None).await;
    assert_eq!(s, 200, "{v}");
    next_ws(&mut ws, "active", |v| v["event"] == "connection_update" && v["data"]["state"] == "active").await;

    let (s, poll) = call(
        a,
        "POST",
        &format!("/api/v1/accounts/{acc}/messages"),
        &key,
        Some(json!({ "to": format!("+{ERIN}"),
                     "poll": { "name": "Lunch?", "options": ["pizza", "salad", "soup"], "selectable_count": 0 } })),
    )
    .await;
    assert_eq!(s, 201, "{poll}");
    assert_eq!(counts(&poll), vec![("pizza".to_owned(), 0), ("salad".to_owned(), 0), ("soup".to_owned(), 0)]);
    assert!(!poll.to_string().contains("secret"), "the poll's secret stays on the server: {poll}");
    let id = poll["id"].as_str().unwrap().to_owned();
    let wa = poll["wa_message_id"].as_str().unwrap().to_owned();
    let got = erin.wait_message(T, |m| m.id == wa).await.expect("Erin received the poll");
    let chat: Jid = got.chat.parse().unwrap();

    // Two options, then one, then none: each vote replaces the voter's last.
    let steps: [(&[&str], [i64; 3]); 3] =
        [(&["pizza", "soup"], [1, 0, 1]), (&["salad"], [0, 1, 0]), (&[], [0, 0, 0])];
    for (options, expected) in steps {
        erin.vote(&chat, &wa, options).unwrap();
        let e = next_ws(&mut ws, "poll_vote", |v| v["event"] == "poll_vote").await;
        assert_eq!(e["data"]["message_id"], id.as_str(), "{e}");
        let chosen: Vec<&str> =
            e["data"]["options"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
        assert_eq!(chosen, options, "{e}");
        let (s, m) = call(a, "GET", &format!("/api/v1/accounts/{acc}/messages/{id}"), &key, None).await;
        assert_eq!(s, 200, "{m}");
        let got: Vec<i64> = counts(&m).into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, expected, "{m}");
        assert_eq!(
            m["poll_results"]["voters"].as_array().unwrap().len(),
            usize::from(!options.is_empty()),
            "{m}"
        );
    }
    // An option the poll lacks is refused by the phone itself.
    assert!(erin.vote(&chat, &wa, &["tacos"]).is_err());
    srv.stop().await;
}
