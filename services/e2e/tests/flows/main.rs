//! Flows that cross services: a consumer of consumer-api pays a merchant of merchant-api, the
//! orchestrator's ledger moves the money, the merchant sees it in its list and live stream.

mod charges;
mod contract;
mod delivery;

mod helpers;
mod merchants;
mod metrics;
mod qr_images;
mod qr_payments;
mod refunds;
mod stream;
mod transactions;
