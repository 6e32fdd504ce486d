//! tel4vn: authentication, parsing and normalization of its events (pure).
