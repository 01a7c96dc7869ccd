//! The service account's token when Keycloak cannot be reached.

use paykit::keycloak::{KeycloakError, KeycloakSettings, ServiceAccount};

/// An address nothing listens on: a port the system gave out and took back.
fn unreachable_keycloak() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn a_renewal_that_fails_while_the_token_is_valid_answers_the_valid_token_and_an_expired_one_is_an_error(
) {
    let account = ServiceAccount::new(KeycloakSettings {
        base_url: unreachable_keycloak(),
        realm: "paytool".into(),
        client_id: "orchestrator".into(),
        client_secret: String::from("not-used").into(),
    })
    .expect("an account");
    assert!(
        matches!(account.token().await, Err(KeycloakError::Unreachable(_))),
        "nothing cached and Keycloak away: an error"
    );

    account.cache_token_for_test("still-valid", 60_000).await;
    assert_eq!(
        account.token().await.expect("the cached token"),
        "still-valid",
        "the renewal failed, the token it was renewing is still good"
    );

    account.cache_token_for_test("expired", 0).await;
    assert!(
        matches!(account.token().await, Err(KeycloakError::Unreachable(_))),
        "an expired token is never answered"
    );
}
