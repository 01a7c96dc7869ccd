//! Every error a client of these APIs sees is a problem document, including the ones axum
//! produces itself before a handler runs.

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

#[derive(Deserialize)]
struct Page {
    #[allow(dead_code)]
    limit: u32,
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    let router = Router::new()
        .route(
            "/things/{id}",
            get(|Path(_id): Path<uuid::Uuid>| async { "ok" }),
        )
        .route("/pages", get(|Query(_page): Query<Page>| async { "ok" }));
    tokio::spawn(paykit::server::serve(listener, router));
    address
}

async fn problem_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..]),
        "status {status} is a problem document"
    );
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_malformed_path_or_query_and_an_unknown_route_are_problem_documents() {
    let address = serve().await;
    let client = reqwest::Client::new();
    let (status, problem) = problem_of(
        client
            .get(format!("{address}/things/not-a-uuid"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["status"], 400);
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    let (status, _) = problem_of(
        client
            .get(format!("{address}/pages?limit=many"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, problem) = problem_of(
        client
            .get(format!("{address}/nowhere"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(problem["type"]
        .as_str()
        .is_some_and(|t| t.ends_with("/not-found")));
    let (status, _) = problem_of(
        client
            .post(format!("{address}/pages"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 405);
    // What a handler answers is left alone.
    let ok = client
        .get(format!("{address}/things/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.expect("text"), "ok");
}
