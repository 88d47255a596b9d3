//! The checkout event as upstream writes it (`docs/CHECKOUT-EVENT.md`),
//! and a generator of realistic Black Friday traffic in that format.
//!
//! The server decodes these events; the demo source and the load tester
//! produce them. Both sides use the one model here so the generator cannot
//! drift from what the decoder accepts.

pub mod cities;
pub mod contract;
pub mod demo;
pub mod geo;
pub mod money;
pub mod time;

pub use contract::{Buyer, CheckoutEvent, LineItem, Order, Shipping, Shop, CHECKOUT_COMPLETED};
