//! Files read with a bound: a configuration, a state file or a capture that has grown past what
//! it can hold (or a link to `/dev/zero`) is refused, naming the file, instead of read until
//! memory runs out.

use std::io::{self, Read};
use std::path::Path;

/// The most a configuration file may hold.
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;
/// The most a state file may hold.
pub const STATE_MAX_BYTES: u64 = 1 << 20;
/// The most a file holding one secret may hold.
pub const SECRET_MAX_BYTES: u64 = 64 << 10;

/// `O_NOFOLLOW` on Linux: the daemon's own files are never opened through a link.
pub const O_NOFOLLOW: i32 = 0o400_000;

/// A new, empty file at `path` (mode 0600) for a temp file about to be renamed into place:
/// whatever is there (a leftover, or a link planted there) is removed first, and the file is
/// created new, never through a link.
///
/// # Errors
/// It cannot be removed or created.
pub fn create_fresh(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(O_NOFOLLOW).open(path)
}

/// The whole of `path` if it holds at most `limit` bytes.
///
/// # Errors
/// The file cannot be read, or holds more than `limit` bytes (`InvalidData`, saying the bound).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it holds more than {limit} bytes, more than such a file ever needs; not read"),
        ));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
///
/// # Errors
/// As [`read_bounded`], and `InvalidData` for bytes that are not UTF-8 (saying where).
pub fn read_text_bounded(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_file_is_never_written_through_a_planted_link() {
        let dir = std::env::temp_dir().join(format!("p2p-fresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let tmp = dir.join("state.json.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let mut f = create_fresh(&tmp).unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_beyond_its_bound_is_refused_and_dev_zero_ends() {
        let dir = std::env::temp_dir().join(format!("p2p-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![b'a'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        let e = read_bounded(&path, 99).unwrap_err();
        assert!(e.to_string().contains("more than 99 bytes"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        std::fs::write(&path, [0xC3, 0x28]).unwrap();
        assert!(read_text_bounded(&path, 10).unwrap_err().to_string().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
