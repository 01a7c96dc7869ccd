//! A stopping service does not wait forever for requests that never end (live streams): after
//! the drain bound it stops, and requests that do end are answered before it does.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use std::time::Duration;

/// A body that never ends, like a Server-Sent Events stream.
fn endless() -> Body {
    let ticks = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((Ok::<_, std::io::Error>(": tick\n\n".to_string()), ()))
    });
    Body::from_stream(ticks)
}

#[tokio::test]
async fn shutdown_stops_after_the_drain_bound_even_with_a_stream_open() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    let router = Router::new()
        .route("/stream", get(|| async { endless() }))
        .route("/quick", get(|| async { "done" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(paykit::server::serve_until(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        200,
    ));
    let stream = reqwest::get(format!("{address}/stream"))
        .await
        .expect("the stream opens");
    assert_eq!(stream.status(), 200);
    assert_eq!(
        reqwest::get(format!("{address}/quick"))
            .await
            .expect("answered")
            .text()
            .await
            .expect("text"),
        "done"
    );
    stop.send(()).expect("the server listens for the stop");
    // A bound on the wait so that a server that never stops fails instead of hanging.
    let finished = tokio::time::timeout(Duration::from_secs(30), server).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "the server stopped although a stream was open: {finished:?}"
    );
    drop(stream);
}
