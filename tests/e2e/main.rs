//! End-to-end tests: the real service, the real wasm runtime and connector components, against
//! simulators of the remote systems and third-party programs (scim2-server). One binary, so wasmtime is
//! linked once.

mod admin_api;
mod bundled;
mod headers;
mod ias;
mod ips_target;
mod jam;
mod notify;
mod plugins;
mod provisioning;
mod proxy;
mod proxy_limits;
mod quarantine;
mod realtime;
mod replicas;
mod round_trip;
mod runaway_reads;
mod sandbox;
mod scaffold;
mod scim_connector;
mod secrets;
mod sinks;
mod support;
mod xsuaa;
