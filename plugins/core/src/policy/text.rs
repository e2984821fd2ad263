//! Messages and field paths built from pieces: `concat(&["route `", name, "` is defined
//! twice"])`, `number(3)`. The policy's error messages are only ever strings glued
//! together; one non-generic function for that, instead of a `format!` (a `fmt::Arguments`
//! with a formatter per argument type) at every message, keeps the filters' Wasm smaller.
//! Knows nothing of what the messages say.

/// The pieces one after another.
pub(crate) fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// `n` in decimal. (Through u64's `Display`, which the filters have anyway; a digit loop
/// of our own came out larger.)
pub(crate) fn number(n: u64) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::concat;

    #[test]
    fn glues_pieces_in_order() {
        assert_eq!(concat(&["a `", "x", "` b"]), "a `x` b");
        assert_eq!(concat(&[]), "");
    }
}
