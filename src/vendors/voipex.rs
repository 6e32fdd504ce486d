//! voipex: authentication, parsing and normalization of its events (pure).
