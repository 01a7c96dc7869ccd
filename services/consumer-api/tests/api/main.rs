mod contract;
mod health;
mod helpers;
mod wallet;
