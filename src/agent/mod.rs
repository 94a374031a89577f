//! The node agent: a `Filesystem` over a local Linux `/proc`.

pub mod summary;
