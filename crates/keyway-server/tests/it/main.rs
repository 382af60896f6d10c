//! Integration tests: the real server on a random loopback port with a fresh database,
//! driven through HTTP.

mod access_codes;
mod api_surface;
mod backup;
mod cli;
mod client;
mod database_loss;
mod engine;
mod faults;
mod helpers;
mod instances;
mod kept_lists;
mod locks;
mod model;
mod multiple;
mod tenancy;
mod unmanaged;
mod webhooks;
mod zwave;
mod zwave_link;
