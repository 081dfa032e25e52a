//! The container image (Containerfile): built with Debian's podman from the statically linked
//! binary (tests/prerequisites.sh builds it), one file, a non-root user, no shell. The image
//! is run with podman where this machine allows containers, else its exported root file
//! system runs under chroot as the image's user; either way a Flux feed is polled from it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{eventually, free_port, get};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const STATIC_BINARY: &str = "target/x86_64-unknown-linux-gnu/release/flux-inputs";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman is installed (tests/prerequisites.sh)")
}

/// A started container or chrooted server, stopped when dropped.
enum Running {
    Container(String),
    Process(std::process::Child),
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Container(name) => {
                podman(&["rm", "-f", name]);
            }
            Running::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[test]
fn the_image_holds_one_static_file_runs_as_non_root_and_serves_a_feed() {
    assert!(
        Path::new(ROOT).join(STATIC_BINARY).exists(),
        "{STATIC_BINARY} is missing: tests/prerequisites.sh builds it"
    );
    let tag = format!("localhost/flux-inputs-test:{}", std::process::id());
    let built = Command::new("podman")
        .args(["build", "-q", "-f", "Containerfile", "-t", &tag, "."])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let inspect = podman(&[
        "image",
        "inspect",
        &tag,
        "--format",
        "{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Cmd}}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        "65532:65532 [/flux-inputs] [serve]"
    );

    // Its root file system: the binary, and nothing to run it with but the kernel.
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let created = podman(&["create", &tag]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let container = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let exported = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "podman export {container} | tar -x -C {}",
            rootfs.display()
        ))
        .status()
        .unwrap();
    podman(&["rm", &container]);
    assert!(exported.success());
    let mut files: Vec<String> = walk(&rootfs);
    files.sort();
    assert_eq!(files, ["flux-inputs"], "one file, no shell, no libraries");
    let binary = std::fs::read(rootfs.join("flux-inputs")).unwrap();
    assert!(
        !needs_interpreter(&binary),
        "statically linked: no ELF interpreter"
    );

    // Run it: podman if containers may run here, else chroot as the image's user.
    let port = free_port();
    let running = run_with_podman(&tag, port).unwrap_or_else(|| {
        eprintln!("containers cannot run on this machine; running the image's root file system under chroot");
        let data = rootfs.join("data");
        std::fs::create_dir_all(&data).unwrap();
        Command::new("chown").args(["65532:65532"]).arg(&data).status().unwrap();
        let child = Command::new("/usr/sbin/chroot")
            .args(["--userspec=65532:65532"])
            .arg(&rootfs)
            .args(["/flux-inputs", "serve"])
            .env_clear()
            .env("AUTH_TOKEN", "image-token")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_PATH", "/data/flux-inputs.db")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chroot (coreutils) runs");
        Running::Process(child)
    });
    eventually(
        "the image's server answers /ready",
        Duration::from_secs(30),
        || get(port, "/ready", None).is_ok_and(|(status, _)| status == 200),
    );
    let (status, body) = get(
        port,
        "/api/v2/flux/clusters/lab-dev-01.k8s.example.com/platform-components",
        Some("image-token"),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""id":"cert-manager""#), "{body}");
    if let Running::Process(child) = &running {
        let owner = std::fs::metadata(rootfs.join("data/flux-inputs.db")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            owner.uid(),
            65532,
            "written as the image's user, not root (pid {})",
            child.id()
        );
    }
    drop(running);
    podman(&["rmi", "-f", &tag]);
}

/// Starts the image with podman on the host network; `None` when this machine refuses to run
/// containers (no user namespaces, no rlimits: seen on CI sandboxes).
fn run_with_podman(tag: &str, port: u16) -> Option<Running> {
    let name = format!("flux-inputs-test-{port}");
    let started = podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        "AUTH_TOKEN=image-token",
        "-e",
        &format!("LISTEN_ADDR=127.0.0.1:{port}"),
        "--tmpfs",
        "/data:uid=65532,gid=65532",
        tag,
    ]);
    if started.status.success() {
        return Some(Running::Container(name));
    }
    podman(&["rm", "-f", &name]);
    None
}

/// The regular files under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(
                walk(&path).into_iter().map(|inner| {
                    format!("{}/{inner}", path.file_name().unwrap().to_string_lossy())
                }),
            );
        } else {
            found.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found
}

/// Whether an ELF64 executable names a program interpreter (a `PT_INTERP` program header):
/// a dynamically linked program, which needs a loader and libraries the image does not have.
fn needs_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    let number = |at: usize, len: usize| {
        elf[at..at + len]
            .iter()
            .rev()
            .fold(0usize, |n, byte| n << 8 | usize::from(*byte))
    };
    let (table, entry, entries) = (number(0x20, 8), number(0x36, 2), number(0x38, 2));
    (0..entries).any(|i| number(table + i * entry, 4) == 3)
}
