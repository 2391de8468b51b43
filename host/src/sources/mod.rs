//! Where candidate builds come from (the COMPONENT file, an OCI registry, admin uploads). Each source only makes [`crate::builds::Candidate`]s and submits
//! them through the one door; none decides swap or canary, keeps history or touches a running build.

pub mod file;
pub mod registry;
pub mod upload;
