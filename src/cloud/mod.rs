//! The Huawei Cloud client: signing, HTTP with retries, DLI, DLF and OBS. The only module that
//! knows the services' wire formats.

pub mod signer;
