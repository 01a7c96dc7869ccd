mod contract;
mod health;
mod helpers;
mod ledger;
mod payments;
mod recovery;
