//! Integration tests: the real server on a random loopback port with a fresh database,
//! driven through HTTP.

mod access_codes;
mod api_surface;
mod cli;
mod client;
mod engine;
mod helpers;
mod tenancy;
mod unmanaged;
