//! Token verification against the test platform's Keycloak: a verified token is kept until it
//! expires, and keeping it never lets a changed token through.

use paykit::auth::{AuthError, Verifier};

#[tokio::test]
async fn a_verified_token_is_answered_from_memory_and_a_tampered_copy_is_still_refused() {
    let verifier =
        Verifier::new(paykit::testing::auth_settings("orchestrator")).expect("a verifier");
    let token = paykit::testing::client_token("consumer-api").await;

    let first = verifier.verify(&token).await.expect("a valid token");
    assert_eq!(verifier.verified_tokens(), (1, 0), "verified and kept");
    let again = verifier.verify(&token).await.expect("still valid");
    assert_eq!(
        verifier.verified_tokens(),
        (1, 1),
        "the second time is answered from memory"
    );
    assert_eq!(
        (again.subject, again.client_id),
        (first.subject, first.client_id)
    );

    // One character inside the signature changed (not its last, whose low bits are padding):
    // another hash, so verified afresh, and refused.
    let at = token.len() - 10;
    let swapped = if &token[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &token[..at], &token[at + 1..]);
    assert!(
        matches!(verifier.verify(&tampered).await, Err(AuthError::Invalid(_))),
        "a changed token is not the kept one"
    );
    assert_eq!(
        verifier.verified_tokens(),
        (1, 1),
        "a refused token is not kept"
    );
}
