//! Which `burrow` command lines a run plan may serve (docs/run-plans.md §1, "Grammar"), and the plan's key.
//! The TypeScript side splits process.argv with the same rules and hashes the same bytes: a
//! difference between the two is a miss (Node runs), never a wrong plan.

use sha2::{Digest, Sha256};

/// A `run` command line the grammar accepts: the option tokens between `run` and the image,
/// verbatim, the image as given and the command.
#[derive(Debug, PartialEq, Eq)]
pub struct RunLine<'a> {
    pub options: &'a [String],
    pub image: &'a str,
    pub command: &'a [String],
}

/// Options that take a value, as a separate token or (long ones) after `=`.
const WITH_VALUE: [&str; 8] = ["--network", "--net", "-e", "--env", "-w", "--workdir", "-u", "--user"];

/// Splits `args` (argv[1..]) when it is `run` with options the grammar knows, `--rm` among
/// them, an image that looks like a file and a command; None for anything else.
pub fn split(args: &[String]) -> Option<RunLine<'_>> {
    if args.first().map(String::as_str) != Some("run") {
        return None;
    }
    let mut rm = false;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if !a.starts_with('-') {
            break;
        }
        match a {
            "--rm" => rm = true,
            "--hpc" => {}
            _ if WITH_VALUE.contains(&a) => {
                // The value is the next token, whatever it is (commander takes it so).
                if i + 1 >= args.len() {
                    return None;
                }
                i += 1;
            }
            _ => {
                let long_with_eq = WITH_VALUE.iter().any(|o| o.starts_with("--") && a.len() > o.len() && a.starts_with(o) && a.as_bytes()[o.len()] == b'=');
                if !long_with_eq {
                    return None;
                }
            }
        }
        i += 1;
    }
    let image = args.get(i)?.as_str();
    let command = &args[i + 1..];
    if !rm || command.is_empty() || !(image.contains('/') || image.ends_with(".sqfs") || image.ends_with(".sif")) {
        return None;
    }
    Some(RunLine { options: &args[1..i], image, command })
}

/// The bytes the key hashes: the format's tag, each option token and the image (each ended by
/// NUL, the options' list by one more), the working directory and the uid.
pub fn key_input(line: &RunLine<'_>, cwd: &[u8], uid: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"burrow-run-plan-1\0");
    for o in line.options {
        b.extend_from_slice(o.as_bytes());
        b.push(0);
    }
    b.push(0);
    b.extend_from_slice(line.image.as_bytes());
    b.push(0);
    b.extend_from_slice(cwd);
    b.push(0);
    b.extend_from_slice(uid.to_string().as_bytes());
    b.push(0);
    b
}

/// The plan's key: the lowercase hex sha256 of key_input.
pub fn key(line: &RunLine<'_>, cwd: &[u8], uid: u32) -> String {
    hex(&Sha256::digest(key_input(line, cwd, uid)))
}

pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn accepts_the_grammar() {
        let a = v(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "A=1",
            "--env=B",
            "-w",
            "/x",
            "--user=1:1",
            "--hpc",
            "--net=host",
            "-u",
            "0",
            "--workdir=/y",
            "--net",
            "n",
            "--env",
            "C",
            "--workdir",
            "/z",
            "--user",
            "u",
            "--network=none",
            "img.sqfs",
            "sh",
            "-c",
            "--rm x",
        ]);
        let l = split(&a).unwrap();
        assert_eq!(l.options, &a[1..24]);
        assert_eq!(l.image, "img.sqfs");
        assert_eq!(l.command, &v(&["sh", "-c", "--rm x"])[..]);
        // A value that looks like an option is still the value; the command is verbatim.
        let a = v(&["run", "-e", "--rm", "--rm", "./job.sif", "--version"]);
        let l = split(&a).unwrap();
        assert_eq!((l.options.len(), l.image, l.command.len()), (3, "./job.sif", 1));
        assert!(split(&v(&["run", "--rm", "/abs/file", "true"])).is_some());
    }

    #[test]
    fn refuses_the_rest() {
        for a in [
            &["images"][..],
            &["--root", "/s", "run", "--rm", "a.sqfs", "true"],
            &["run", "a.sqfs", "true"],              // no --rm
            &["run", "--rm", "a.sqfs"],              // no command
            &["run", "--rm", "busybox", "true"],     // not a file's name
            &["run", "--rm", "-it", "a.sqfs", "sh"], // unknown flags
            &["run", "--rm", "-d", "a.sqfs", "sh"],
            &["run", "--rm", "--name", "x", "a.sqfs", "sh"],
            &["run", "--rm", "-eA=1", "a.sqfs", "sh"], // short option glued to its value
            &["run", "--rm", "-e=A", "a.sqfs", "sh"],
            &["run", "--rm", "--networks=x", "a.sqfs", "sh"],
            &["run", "--rm", "--network"], // value missing
            &["run", "--rm", "-u"],
            &["run", "--rm", "--", "a.sqfs", "sh"],
            &["run", "--rm", "-", "a.sqfs", "sh"],
            &["run"],
            &[],
        ] {
            assert_eq!(split(&v(a)), None, "{a:?}");
        }
    }

    #[test]
    fn key_bytes_and_digest() {
        let a = v(&["run", "--rm", "--network", "none", "/tmp/t.sqfs", "true"]);
        let l = split(&a).unwrap();
        let input = key_input(&l, b"/home/u", 1001);
        assert_eq!(input, b"burrow-run-plan-1\0--rm\0--network\0none\0\0/tmp/t.sqfs\0/home/u\x001001\0".to_vec());
        // printf 'burrow-run-plan-1\0--rm\0--network\0none\0\0/tmp/t.sqfs\0/home/u\0001001\0' | sha256sum
        assert_eq!(key(&l, b"/home/u", 1001), "2093a390dddd9d17e3a2b87c35966920f4f1d45206a4b6115619e44f3671daf8");
    }
}
