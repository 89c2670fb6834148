//! Files the root node agent touches in directories a container can also write: the
//! per-replica directory (`run/`, mounted read-write at `/run/berth`) and the per-replica
//! `source-dir-root` subdirectories. A container can put anything there, symbolic links to
//! host files included, so every path below a trusted directory is walked one component at a
//! time with `openat(O_NOFOLLOW)`: a link is refused, never followed. Reads are bounded in
//! size and only take regular files (a FIFO or a device would block or never end); writes go
//! to a temporary file in the same directory and are renamed into place, or, for a file
//! bind-mounted by inode (`/etc/hosts`), rewritten through a descriptor opened without
//! following links. A unix socket is reached through the descriptor of the socket inode
//! itself (`/proc/self/fd/N`), so a link planted in its place is never dialled.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// `name` as a single path component (no `/`, not `.` or `..`).
fn component(name: &str) -> std::io::Result<&str> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a single path component"),
        ));
    }
    Ok(name)
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// An open directory; everything below it is reached without following links.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens `root` (a directory the agent's configuration names; links in it are the
    /// administrator's and are followed), creating it when missing.
    pub fn root(root: &Path) -> std::io::Result<Dir> {
        std::fs::create_dir_all(root)?;
        let fd = nix::fcntl::open(
            root,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(Dir {
            fd,
            path: root.to_path_buf(),
        })
    }

    /// The path this directory was opened as (for messages and bind mounts).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the subdirectory `name`, creating it (mode 0755) when missing. A symbolic
    /// link, or anything but a directory, in its place is an error.
    pub fn sub(&self, name: &str) -> std::io::Result<Dir> {
        let name = component(name)?;
        match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(io(e)),
        }
        // O_NOFOLLOW makes a link fail with ELOOP (or ENOTDIR).
        let fd = openat(
            self.fd.as_fd(),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| refused(&self.path.join(name), io(e)))?;
        Ok(Dir {
            fd,
            path: self.path.join(name),
        })
    }

    /// Opens `name` below this directory with `flags` (O_NOFOLLOW and O_CLOEXEC added).
    fn open(&self, name: &str, flags: OFlag, mode: u32) -> std::io::Result<File> {
        let name = component(name)?;
        let fd = openat(
            self.fd.as_fd(),
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| refused(&self.path.join(name), io(e)))?;
        Ok(File::from(fd))
    }

    /// Reads the regular file `name`, at most `max` bytes (a larger file is an error).
    pub fn read(&self, name: &str, max: usize) -> std::io::Result<Vec<u8>> {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let f = self.open(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, 0)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a regular file", self.path.join(name).display()),
            ));
        }
        let mut out = Vec::new();
        f.take(max as u64 + 1).read_to_end(&mut out)?;
        if out.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is larger than {max} bytes",
                    self.path.join(name).display()
                ),
            ));
        }
        Ok(out)
    }

    /// Replaces `name` with `content` (mode `mode`): written to a temporary file beside it,
    /// then renamed over it, so a link in its place is replaced, not followed.
    pub fn write(&self, name: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
        let name = component(name)?;
        let tmp = format!(".{name}.berth-tmp");
        // A leftover temporary file may or may not be there.
        let _ = unlinkat(self.fd.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let mut f = self.open(&tmp, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, mode)?;
        f.write_all(content)?;
        f.sync_all()?;
        drop(f);
        renameat(self.fd.as_fd(), tmp.as_str(), self.fd.as_fd(), name).map_err(io)
    }

    /// Rewrites `name` in place (created when missing): for a file bind-mounted into a
    /// container by inode, where a renamed file would not be seen. A link is refused.
    pub fn rewrite(&self, name: &str, content: &[u8]) -> std::io::Result<()> {
        let mut f = self.open(name, OFlag::O_WRONLY | OFlag::O_CREAT, 0o644)?;
        if !f.metadata()?.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a regular file", self.path.join(name).display()),
            ));
        }
        f.set_len(0)?;
        f.write_all(content)?;
        Ok(())
    }

    /// Whether `name` exists (as anything, links included, which are not followed).
    pub fn exists(&self, name: &str) -> bool {
        component(name)
            .is_ok_and(|n| fstatat(self.fd.as_fd(), n, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok())
    }

    /// The unix socket `name`, as a path that names its inode (`/proc/self/fd/N`) and the
    /// descriptor that keeps that path valid: connect to the path while holding the
    /// descriptor. Anything but a socket (a link to one included) is an error.
    pub fn socket(&self, name: &str) -> std::io::Result<(OwnedFd, PathBuf)> {
        let f = self.open(name, OFlag::O_PATH, 0)?;
        // O_PATH descriptors support fstat.
        let meta = f.metadata()?;
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a socket", self.path.join(name).display()),
            ));
        }
        let fd = OwnedFd::from(f);
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok((fd, path))
    }
}

/// A link (or a non-directory) where a path had to be followed: say so plainly.
fn refused(path: &Path, e: std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(e) if e == Errno::ELOOP as i32 || e == Errno::ENOTDIR as i32 => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: refusing a symbolic link or unexpected file type (not followed)",
                path.display()
            ),
        ),
        _ => std::io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    }
}

/// The directory under a node's state directory that holds the copy of the remote agent
/// binary (a name no bundle can have: bundle names do not start with a dot).
pub const REMOTE_BIN_SUBDIR: &str = ".bin";

/// Copies the file `from` to `<state_dir>/.bin/berth` (mode 0755, written beside and renamed
/// into place; left alone when it already holds the same bytes) and returns that path.
/// Containers started earlier keep the inode they mounted.
pub fn install_remote_binary(state_dir: &Path, from: &Path) -> std::io::Result<PathBuf> {
    let bytes = std::fs::read(from)?;
    let dir = Dir::root(state_dir)?.sub(REMOTE_BIN_SUBDIR)?;
    let same = dir
        .read("berth", bytes.len())
        .is_ok_and(|have| have == bytes);
    if !same {
        dir.write("berth", &bytes, 0o755)?;
    }
    Ok(dir.path().join("berth"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_refused_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let canary = t.path().join("canary");
        std::fs::write(&canary, "untouched").unwrap();
        let d = Dir::root(&t.path().join("d")).unwrap();
        symlink(&canary, d.path().join("f")).unwrap();
        symlink(t.path(), d.path().join("sub")).unwrap();
        assert!(d.read("f", 100).is_err(), "reading through a link");
        assert!(d.rewrite("f", b"x").is_err(), "rewriting through a link");
        assert!(d.sub("sub").is_err(), "entering a linked directory");
        assert!(d.socket("f").is_err());
        // write() replaces the link itself.
        d.write("f", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "untouched");
        assert_eq!(d.read("f", 100).unwrap(), b"new");
        assert!(d.read("f", 2).is_err(), "over the size limit");
        assert!(d.read("../canary", 100).is_err(), "a path, not a name");
    }

    #[test]
    fn a_fifo_is_not_read() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::root(t.path()).unwrap();
        nix::unistd::mkfifo(&t.path().join("p"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(d.read("p", 100).is_err());
    }

    #[tokio::test]
    async fn a_socket_is_dialled_through_its_own_inode() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::root(t.path()).unwrap();
        let l = tokio::net::UnixListener::bind(t.path().join("s")).unwrap();
        let (_fd, path) = d.socket("s").unwrap();
        let c = tokio::net::UnixStream::connect(&path).await;
        assert!(c.is_ok(), "{c:?}");
        drop(l);
        symlink(t.path().join("s"), t.path().join("link")).unwrap();
        assert!(d.socket("link").is_err());
    }

    #[test]
    fn the_remote_binary_is_copied_once_and_a_planted_link_is_replaced() {
        let state = tempfile::tempdir().unwrap();
        let src = state.path().join("src-berth");
        std::fs::write(&src, b"binary v1").unwrap();
        let to = install_remote_binary(state.path(), &src).unwrap();
        assert_eq!(to, state.path().join(".bin/berth"));
        assert_eq!(std::fs::read(&to).unwrap(), b"binary v1");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(
            std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // The same bytes: left alone (same inode).
        let ino = std::fs::metadata(&to).unwrap().ino();
        install_remote_binary(state.path(), &src).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().ino(), ino);
        // A link in its place is replaced, its target untouched.
        let target = state.path().join("host-file");
        std::fs::write(&target, b"host").unwrap();
        std::fs::remove_file(&to).unwrap();
        std::os::unix::fs::symlink(&target, &to).unwrap();
        install_remote_binary(state.path(), &src).unwrap();
        assert!(std::fs::symlink_metadata(&to).unwrap().is_file());
        assert_eq!(std::fs::read(&target).unwrap(), b"host");
        assert_eq!(std::fs::read(&to).unwrap(), b"binary v1");
    }
}
