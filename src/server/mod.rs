//! TODO(skeleton): filled in by the server work.
