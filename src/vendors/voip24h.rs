//! voip24h: authentication, parsing and normalization of its events (pure).
