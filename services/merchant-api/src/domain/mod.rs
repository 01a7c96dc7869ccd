//! Types that parse: a merchant's profile as its QR codes need it, rendered codes.

pub mod barcode;
pub mod profile;
