//! The secret vault of the local stack: one file per secret in a folder that only the
//! owner of the process may read (0700; files 0600). A file's name is the hex of the
//! secret's name, so names with `/` stay flat. Writes go through a temporary file and a
//! rename, so a crash leaves the old value or the new one, never half of one.

use async_trait::async_trait;
use domain::secrets::{SecretVault, SecretVaultError, check_name};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct FolderSecrets {
    folder: PathBuf,
}

impl FolderSecrets {
    /// Opens (and creates) the vault in `folder`.
    pub fn open(folder: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(folder)?;
        restrict(folder, 0o700)?;
        Ok(Self {
            folder: folder.to_owned(),
        })
    }

    fn path(&self, name: &str) -> Result<PathBuf, SecretVaultError> {
        check_name(name)?;
        let file: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        Ok(self.folder.join(file))
    }
}

/// Runs file work off the async threads; an I/O error makes the vault unavailable.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, SecretVaultError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| SecretVaultError::Unavailable(error.to_string()))?
        .map_err(|error| SecretVaultError::Unavailable(error.to_string()))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[async_trait]
impl SecretVault for FolderSecrets {
    async fn put(&self, name: &str, value: &str) -> Result<(), SecretVaultError> {
        let path = self.path(name)?;
        let value = value.to_owned();
        blocking(move || {
            let folder = path.parent().expect("a secret file is in the vault folder");
            let mut temporary = tempfile::NamedTempFile::new_in(folder)?;
            restrict(temporary.path(), 0o600)?;
            temporary.write_all(value.as_bytes())?;
            temporary.as_file().sync_all()?;
            temporary.persist(&path).map_err(|error| error.error)?;
            Ok(())
        })
        .await
    }

    async fn get(&self, name: &str) -> Result<Option<String>, SecretVaultError> {
        let path = self.path(name)?;
        blocking(move || match std::fs::read_to_string(&path) {
            Ok(value) => Ok(Some(value)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<(), SecretVaultError> {
        let path = self.path(name)?;
        blocking(move || match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        })
        .await
    }
}
