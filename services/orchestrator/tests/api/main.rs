mod contract;
mod events;
mod health;
mod helpers;
mod ledger;
mod payments;
mod recovery;
