//! Image layers on disk. The registry client, manifests and the store's records are in
//! TypeScript (ts/image, ts/storage); what is CPU- or syscall-heavy is here: decompression,
//! diff-id hashing and safe extraction, and making layers (pack.rs), run by `burrow-runtime unpack` inside the user
//! namespace so that file ownership comes out right.

#[cfg(feature = "unpack")]
pub mod pack;
#[cfg(feature = "unpack")]
pub mod tarw;
#[cfg(feature = "unpack")]
pub mod unpack;
