//! Size-limited volumes for a component's data (`paytool up --chaos`): an ext4 image file,
//! loop-mounted over the component's data directory, so that a disk-full fault fills a small
//! filesystem of its own and never the machine's disk.
//!
//! The image is sparse: it takes on disk what the component writes into it, up to its size.
//! It stays mounted while the installation runs and across `down` (`down` unmounts it; the
//! next `up` mounts it again), and `down --purge` unmounts it before deleting anything.
//! Mounting needs root; without it the component writes to the machine's disk as usual and
//! the disk-full fault is refused for it.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kafka's log directory under `--chaos`: room for the test platform's and a long load's
/// events, small enough that filling it is instant.
pub const KAFKA_VOLUME_MB: u64 = 2_048;
/// The file a disk-full fault fills the volume with.
pub const FILLER: &str = ".paytool-disk-full";
/// What is written in one go when the filesystem's last blocks are taken.
const FILL_CHUNK_BYTES: usize = 64 * 1024;
/// What the filesystem may still show free after filling (metadata blocks come and go).
pub const FULL_BYTES_MAX: u64 = 1024 * 1024;

/// Whether `dir` is a mount point (this process's mount table).
pub fn is_mountpoint(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    mount_points().contains(&dir)
}

/// Every mount point, from /proc/self/mountinfo (field 5, with its octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// `\040` and friends back to their bytes (how mountinfo writes spaces and such).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether this process may mount (root).
pub fn can_mount() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Mounts the image at `image` (made, sparse, the first time) over `dir`. Answers false when
/// no volume could be had: not root, or `dir` already holds data written before the
/// installation had a volume (it is not moved; the fault is refused for it).
pub fn ensure(image: &Path, dir: &Path, size_mb: u64) -> anyhow::Result<bool> {
    assert!(
        size_mb > 0 && size_mb <= 64 * 1024,
        "a volume's size is bounded"
    );
    std::fs::create_dir_all(dir)?;
    if is_mountpoint(dir) {
        return Ok(true);
    }
    if !can_mount() {
        return Ok(false);
    }
    let fresh = !image.exists();
    if fresh {
        if std::fs::read_dir(dir)?.next().is_some() {
            return Ok(false);
        }
        let file = std::fs::File::create(image)
            .with_context(|| format!("creating {}", image.display()))?;
        file.set_len(size_mb * 1024 * 1024)?;
        drop(file);
        // No blocks reserved for root (the components run as root: reserved blocks would let
        // them write on when the fault says full), and lazy initialisation: the image stays
        // sparse.
        run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1",
            ])
            .arg(image))?;
    }
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(image)
        .arg(dir))?;
    if fresh {
        // mkfs makes lost+found, and Kafka refuses a directory in its log directory that is
        // not a partition's. fsck makes it again if it ever needs one.
        std::fs::remove_dir(dir.join("lost+found"))?;
    }
    Ok(true)
}

/// Unmounts every mount point under `root`, deepest first. Answers how many.
pub fn unmount_under(root: &Path) -> anyhow::Result<usize> {
    let Ok(root) = root.canonicalize() else {
        return Ok(0);
    };
    let mut under: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&root) && *m != root)
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    under.dedup();
    for dir in &under {
        run(Command::new("umount").arg(dir))?;
    }
    Ok(under.len())
}

/// Free bytes on the filesystem holding `dir`, for an unprivileged writer (`f_bavail`).
pub fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let stat =
        nix::sys::statvfs::statvfs(dir).with_context(|| format!("statvfs {}", dir.display()))?;
    Ok(stat.blocks_available() * stat.fragment_size())
}

/// Fills the volume at `dir` until writes fail with "no space left". Refuses a directory that
/// is not a mount point: the machine's own disk is never filled. Answers the bytes taken.
pub fn fill(dir: &Path) -> anyhow::Result<u64> {
    anyhow::ensure!(
        is_mountpoint(dir),
        "{} is not a volume of its own: filling it would fill the machine's disk",
        dir.display()
    );
    let path = dir.join(FILLER);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let free = free_bytes(dir)?;
    // Most of it at once, then the rest in chunks until the filesystem refuses.
    let bulk = free.saturating_sub(8 * FILL_CHUNK_BYTES as u64);
    if bulk > 0 {
        nix::fcntl::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            nix::fcntl::FallocateFlags::empty(),
            0,
            i64::try_from(bulk)?,
        )
        .with_context(|| format!("fallocate {bulk} bytes in {}", path.display()))?;
    }
    let chunk = vec![0u8; FILL_CHUNK_BYTES];
    // Bounded: the free space left after the bulk, in chunks, and some.
    for _ in 0..64 {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(error) => return Err(error.into()),
        }
    }
    let _ = file.sync_all();
    Ok(file.metadata()?.len())
}

/// Takes the filler away (nothing to do when it is gone already).
pub fn unfill(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(dir.join(FILLER)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_read_back_as_the_bytes_they_stand_for() {
        assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain/path"), "/plain/path");
        assert_eq!(unescape("/trailing\\"), "/trailing\\");
    }

    #[test]
    fn the_root_filesystem_is_a_mount_point_and_a_plain_directory_is_not() {
        assert!(is_mountpoint(Path::new("/")));
        let dir = tempfile::tempdir().expect("a directory");
        assert!(!is_mountpoint(dir.path()));
    }

    #[test]
    fn a_directory_that_is_not_a_volume_of_its_own_is_never_filled() {
        let dir = tempfile::tempdir().expect("a directory");
        let error = fill(dir.path()).expect_err("refused");
        assert!(
            error.to_string().contains("not a volume of its own"),
            "{error}"
        );
        assert!(!dir.path().join(FILLER).exists());
    }
}
