//! The rendered codes: every QR PNG decodes with a real decoder (zbarimg) to the exact payload.

use crate::helpers::{json_of, new_key, yen, World};
use serde_json::json;
use std::process::Command;

async fn bytes(world: &World, token: &str, path: &str) -> (String, Vec<u8>) {
    let response = world
        .http
        .get(format!("{}{path}", world.platform.merchant_api))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "{path}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (
        content_type,
        response.bytes().await.expect("a body").to_vec(),
    )
}

/// What zbarimg reads from a PNG, raw (no "QR-Code:" prefix).
fn zbar(png: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("paytool-qr-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("qr.png");
    std::fs::write(&file, png).expect("written");
    let output = Command::new("zbarimg")
        .args(["--raw", "--quiet", "-Sdisable", "-Sqrcode.enable"])
        .arg(&file)
        .output()
        .expect("zbarimg runs (paytool setup installs zbar-tools)");
    std::fs::remove_dir_all(&dir).ok();
    assert!(output.status.success(), "zbarimg found no code: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim_end_matches('\n')
        .to_string()
}

#[tokio::test]
async fn every_qr_png_decodes_with_zbarimg_to_the_exact_payload() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let mut requests = vec![
        world.payment_request(&merchant, None).await,
        world.payment_request(&merchant, Some(1)).await,
        world.payment_request(&merchant, Some(999_999_999)).await,
    ];
    let with_reference = world
        .merchant_post(
            &merchant,
            "/v1/payment-requests",
            &new_key(),
            json!({ "amount": yen(4_980), "reference": "INV 2026/11-25 #42", "expires_in_s": 600 }),
        )
        .await;
    assert_eq!(with_reference.status(), 201);
    requests.push(json_of(with_reference).await);
    for request in &requests {
        let payload = request["payload"].as_str().expect("payload");
        let (content_type, png) = bytes(
            &world,
            &merchant.token,
            request["qr_png_url"].as_str().expect("url"),
        )
        .await;
        assert_eq!(content_type, "image/png");
        assert_eq!(zbar(&png), payload);
        let (content_type, svg) = bytes(
            &world,
            &merchant.token,
            request["qr_svg_url"].as_str().expect("url"),
        )
        .await;
        assert_eq!(content_type, "image/svg+xml");
        assert!(String::from_utf8(svg).expect("utf-8").contains("<svg"));
    }
    let receipt = requests[3]["code128_svg_url"]
        .as_str()
        .expect("a receipt barcode");
    let (content_type, svg) = bytes(&world, &merchant.token, receipt).await;
    assert_eq!(content_type, "image/svg+xml");
    assert!(String::from_utf8(svg).expect("utf-8").contains("<svg"));
    assert!(
        requests[0]["code128_svg_url"].is_null(),
        "no reference, no receipt barcode"
    );
}
