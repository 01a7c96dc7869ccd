mod contract;
mod health;
mod helpers;
mod transfers;
mod wallet;
