//! Integration tests: the real server on a random loopback port with a fresh database,
//! driven through HTTP.

mod access_codes;
mod api_surface;
mod engine;
mod helpers;
mod tenancy;
mod unmanaged;
mod webhooks;
