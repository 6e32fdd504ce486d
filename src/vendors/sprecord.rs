//! sprecord: authentication, parsing and normalization of its events (pure).
