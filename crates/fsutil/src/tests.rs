use super::*;

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_missing_target_is_created_and_no_temporary_file_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    write_atomically(&path, b"{}\n", None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
    assert_eq!(names(dir.path()), ["settings.json"]);
}

#[test]
fn the_old_contents_are_replaced_whole_by_shorter_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(&path, "nameserver 192.0.2.53\nnameserver 192.0.2.54\n").unwrap();
    write_atomically(&path, b"nameserver 1.1.1.1\n", None).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nameserver 1.1.1.1\n"
    );
    assert_eq!(names(dir.path()), ["resolv.conf"]);
}

#[test]
fn a_relative_path_in_the_working_folder_is_written() {
    // The folder to sync is "." when the path has no parent part.
    let name = format!("ember-fsutil-relative-{}", std::process::id());
    let path = std::env::temp_dir().join(&name);
    let previous = std::env::current_dir().unwrap();
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    let written = write_atomically(Path::new(&name), b"x", None);
    std::env::set_current_dir(previous).unwrap();
    written.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"x");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_missing_folder_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("file");
    let error = write_atomically(&path, b"x", None).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    assert!(names(dir.path()).is_empty());
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    let error = write_atomically(Path::new("/"), b"x", None).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn an_abandoned_write_keeps_the_old_file_and_removes_its_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preferences.json");
    std::fs::write(&path, "old").unwrap();
    let mut file = AtomicFile::create(&path, None).unwrap();
    file.write_all(b"half of the ne").unwrap();
    assert_eq!(
        names(dir.path()).len(),
        2,
        "the temporary file is beside it"
    );
    drop(file);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
    assert_eq!(names(dir.path()), ["preferences.json"]);
}

#[test]
fn a_failed_rename_keeps_the_target_and_removes_the_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // A folder that is not empty cannot be replaced by a file.
    let path = dir.path().join("occupied");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), "kept").unwrap();
    assert!(write_atomically(&path, b"x", None).is_err());
    assert_eq!(names(dir.path()), ["occupied"]);
    assert_eq!(
        std::fs::read_to_string(path.join("inside")).unwrap(),
        "kept"
    );
}

#[test]
fn a_file_written_piece_by_piece_with_seeks_is_committed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.zip");
    let mut file = AtomicFile::create(&path, None).unwrap();
    file.write_all(b"....body").unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.as_file_mut().write_all(b"head").unwrap();
    file.commit().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"headbody");
    assert_eq!(names(dir.path()), ["bundle.zip"]);
}

#[test]
fn writers_on_many_threads_each_leave_one_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let versions: Vec<Vec<u8>> = (0..8u8).map(|n| vec![b'a' + n; 4096]).collect();
    std::thread::scope(|scope| {
        for version in &versions {
            let path = &path;
            scope.spawn(move || {
                for _ in 0..20 {
                    write_atomically(path, version, None).unwrap();
                }
            });
        }
    });
    let contents = std::fs::read(&path).unwrap();
    assert!(versions.contains(&contents));
    assert_eq!(names(dir.path()), ["state"]);
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_mode_is_applied_to_a_new_file_and_replaces_the_old_files_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("private_key");
        write_atomically(&key, b"secret\n", Some(0o600)).unwrap();
        assert_eq!(mode(&key), 0o600);

        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "old").unwrap();
        std::fs::set_permissions(&resolv, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&resolv, b"new", Some(0o644)).unwrap();
        assert_eq!(mode(&resolv), 0o644);
    }

    /// The umask only narrows what `open` creates; a file others must read (resolv.conf)
    /// stays readable under a service's strict umask.
    #[test]
    fn the_mode_is_exact_even_where_the_umask_would_narrow_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared");
        write_atomically(&path, b"x", Some(0o666)).unwrap();
        assert_eq!(mode(&path), 0o666);
    }

    #[test]
    fn the_temporary_file_has_the_mode_before_any_content_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private_key");
        let file = AtomicFile::create(&path, Some(0o600)).unwrap();
        let temporary = dir.path().join(
            names(dir.path())
                .into_iter()
                .find(|name| name.starts_with(".private_key.ember-tmp-"))
                .unwrap(),
        );
        assert_eq!(std::fs::metadata(&temporary).unwrap().len(), 0);
        assert_eq!(mode(&temporary), 0o600);
        file.commit().unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_link_at_the_target_is_replaced_and_what_it_pointed_at_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "theirs").unwrap();
        let path = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        write_atomically(&path, b"ours", Some(0o644)).unwrap();
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ours");
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "theirs");
    }

    #[test]
    fn a_read_only_folder_reports_the_error_and_leaves_nothing() {
        if running_as_root() {
            // Root writes into a read-only folder anyway; nothing to show.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("etc");
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
        let error = write_atomically(&folder.join("file"), b"x", None).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(names(&folder).is_empty());
    }

    fn running_as_root() -> bool {
        use std::os::unix::fs::MetadataExt as _;
        // The owner of a file this process creates is its effective user.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::metadata(file.path()).unwrap().uid() == 0
    }
}
