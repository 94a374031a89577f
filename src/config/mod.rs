//! TODO(skeleton): filled in by the config work.
