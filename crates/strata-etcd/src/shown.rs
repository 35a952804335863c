//! Keys and values shown to a person (plans, errors): shared by the client, the
//! snapshot reader and restores.

/// Bytes for a human: quoted text (escaped, truncated to `max` characters) when they are
/// UTF-8 without control characters, else hex of the first bytes; the size when cut.
pub(crate) fn show_bytes(bytes: &[u8], max: usize) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            if text.chars().count() <= max {
                format!("{text:?}")
            } else {
                let head: String = text.chars().take(max).collect();
                format!("{head:?}… ({} bytes)", bytes.len())
            }
        }
        _ => {
            let shown = bytes.len().min(max / 2);
            let cut = if shown < bytes.len() { "…" } else { "" };
            format!(
                "0x{}{cut} ({} bytes, binary)",
                hex::encode(&bytes[..shown]),
                bytes.len()
            )
        }
    }
}
