mod contract;
mod health;
mod helpers;
mod payment_codes;
mod transfers;
mod wallet;
