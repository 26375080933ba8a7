//! What each side of the Windows named pipe checks, as pure functions and constants, so the
//! Linux tests exercise them too; the Win32 calls that feed them live in `windows.rs`.
//!
//! The attack they stop: a named pipe is one name with many instances, and whoever may create
//! an instance can answer the app in the service's place. A local user who could create one
//! would receive the app's sign-in requests and tokens. So users get no
//! `FILE_CREATE_PIPE_INSTANCE` on the pipe, and the app checks the process serving the
//! instance it reached: its image must be installed under Program Files (which only
//! administrators can write) and it must run as LocalSystem.

/// The pipe's security descriptor: owned by SYSTEM; a protected DACL (nothing inherited) with
/// full control for SYSTEM and administrators, and for interactive users read and write
/// (`FILE_GENERIC_READ | FILE_GENERIC_WRITE` without `FILE_CREATE_PIPE_INSTANCE`, 0x12019b).
/// `GRGW` would include `FILE_CREATE_PIPE_INSTANCE`, which for pipes is `FILE_APPEND_DATA`.
pub const PIPE_SDDL: &str = "O:SYD:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12019b;;;IU)";

/// Why the app refuses the process that serves the pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerRefusal {
    #[error(
        "the process serving the tunnel service's pipe ({image}) is not installed under \
         {program_files}; another program may be posing as the service"
    )]
    NotInstalled {
        image: String,
        program_files: String,
    },
    #[error(
        "the process serving the tunnel service's pipe ({image}) does not run as LocalSystem; \
         another program may be posing as the service"
    )]
    NotSystem { image: String },
    /// Checked for every pipe name, installed or not: whoever created the pipe owns it.
    #[error(
        "the tunnel service's pipe is not owned by LocalSystem; another program may be posing \
         as the service"
    )]
    NotOwnedBySystem,
}

/// Admits the pipe's server process when its image lies inside `program_files` and it runs
/// as LocalSystem.
pub fn check_server(
    image: &str,
    program_files: &str,
    runs_as_system: bool,
) -> Result<(), ServerRefusal> {
    if !is_inside_folder(image, program_files) {
        return Err(ServerRefusal::NotInstalled {
            image: image.to_owned(),
            program_files: program_files.to_owned(),
        });
    }
    if !runs_as_system {
        return Err(ServerRefusal::NotSystem {
            image: image.to_owned(),
        });
    }
    Ok(())
}

/// Whether the Windows path `path` names something strictly inside `folder`. Windows paths
/// compare case-insensitively and accept `/` for `\`; a path with `.`, `..` or empty
/// components is refused rather than resolved, since the image path of a process never has
/// them and a lookalike could use them to leave the folder.
pub fn is_inside_folder(path: &str, folder: &str) -> bool {
    let (Some(path), Some(folder)) = (components(path), components(folder)) else {
        return false;
    };
    path.len() > folder.len() && path.iter().zip(&folder).all(|(a, b)| a == b)
}

/// The lower-cased components of an absolute Windows path, or `None` for anything odd.
fn components(path: &str) -> Option<Vec<String>> {
    let path = path.replace('/', "\\");
    let path = path.strip_prefix(r"\\?\").unwrap_or(&path);
    let trimmed = path.strip_suffix('\\').unwrap_or(path);
    let parts: Vec<String> = trimmed.split('\\').map(str::to_lowercase).collect();
    let drive = parts.first()?;
    let is_drive = drive.len() == 2
        && drive.ends_with(':')
        && drive
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
    if !is_drive
        || parts[1..]
            .iter()
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return None;
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM_FILES: &str = r"C:\Program Files";
    const INSTALLED: &str = r"C:\Program Files\Ember\ember-tunnel.exe";

    /// The access mask of the ACE that names `trustee` in an SDDL string.
    fn ace_mask(sddl: &str, trustee: &str) -> String {
        sddl.split('(')
            .filter_map(|ace| ace.strip_suffix(')'))
            .map(|ace| ace.split(';').collect::<Vec<_>>())
            .find(|fields| fields[5] == trustee)
            .map(|fields| fields[2].to_owned())
            .unwrap_or_else(|| panic!("no ACE for {trustee} in {sddl}"))
    }

    #[test]
    fn interactive_users_cannot_create_a_rogue_pipe_instance() {
        const FILE_READ_DATA: u32 = 0x1;
        const FILE_WRITE_DATA: u32 = 0x2;
        const FILE_CREATE_PIPE_INSTANCE: u32 = 0x4;
        const SYNCHRONIZE: u32 = 0x0010_0000;
        let mask = ace_mask(PIPE_SDDL, "IU");
        let mask = u32::from_str_radix(mask.trim_start_matches("0x"), 16).unwrap();
        assert_eq!(mask & FILE_CREATE_PIPE_INSTANCE, 0, "{mask:#x}");
        // …and can still talk to the service.
        for right in [FILE_READ_DATA, FILE_WRITE_DATA, SYNCHRONIZE] {
            assert_ne!(mask & right, 0, "{mask:#x} lacks {right:#x}");
        }
    }

    #[test]
    fn the_pipe_is_owned_by_system_and_inherits_nothing() {
        assert!(PIPE_SDDL.starts_with("O:SYD:P("), "{PIPE_SDDL}");
        assert_eq!(ace_mask(PIPE_SDDL, "SY"), "GA");
        assert_eq!(ace_mask(PIPE_SDDL, "BA"), "GA");
        assert_eq!(
            PIPE_SDDL.matches("(A;").count(),
            3,
            "only SY, BA and IU are granted"
        );
        assert!(!PIPE_SDDL.contains(";WD)"), "Everyone is never granted");
    }

    #[test]
    fn the_installed_service_running_as_system_is_admitted() {
        assert_eq!(check_server(INSTALLED, PROGRAM_FILES, true), Ok(()));
        let odd_spelling = r"\\?\c:/PROGRAM FILES/Ember/ember-tunnel.exe";
        assert_eq!(
            check_server(odd_spelling, r"C:\Program Files\", true),
            Ok(())
        );
    }

    #[test]
    fn a_pipe_server_run_from_a_user_folder_is_refused() {
        let rogue = r"C:\Users\mallory\AppData\Local\Temp\ember-tunnel.exe";
        assert!(matches!(
            check_server(rogue, PROGRAM_FILES, true),
            Err(ServerRefusal::NotInstalled { .. })
        ));
    }

    #[test]
    fn a_lookalike_folder_next_to_program_files_is_refused() {
        for rogue in [
            r"C:\Program Files Evil\ember-tunnel.exe",
            r"C:\Program Files (x86)2\ember-tunnel.exe",
            r"D:\Program Files\Ember\ember-tunnel.exe",
            r"C:\Program Files\..\Users\mallory\ember-tunnel.exe",
            r"C:\Program Files\.\..\Temp\ember-tunnel.exe",
            r"C:\Program Files\\ember-tunnel.exe",
            r"\\server\share\Program Files\ember-tunnel.exe",
            r"C:\Program Files",
            "",
        ] {
            assert!(!is_inside_folder(rogue, PROGRAM_FILES), "{rogue}");
        }
    }

    #[test]
    fn an_installed_binary_started_by_a_user_is_refused() {
        assert!(matches!(
            check_server(INSTALLED, PROGRAM_FILES, false),
            Err(ServerRefusal::NotSystem { .. })
        ));
    }
}
