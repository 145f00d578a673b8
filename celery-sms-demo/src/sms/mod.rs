//! SMS gateways (in progress).
