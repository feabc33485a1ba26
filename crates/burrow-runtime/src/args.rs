//! A small runc-compatible argument parser. Global flags come before the command. Most of runc's
//! commands (urfave/cli with argument reordering) also take their flags after the container id,
//! as clients use them (`create ID --bundle DIR`): `parse_interspersed`, up to a `--`. `exec` and
//! `ps` do not reorder in runc (what follows the id belongs to the command: `exec ID sh -c ...`
//! leaves `-c` to it): `parse`, whose flags end at the first positional argument.
//! `--flag=value` and `--flag value` both work; an unknown flag is an error, never skipped.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Parsed {
    pub flags: HashMap<String, Vec<String>>,
    pub positional: Vec<String>,
}

impl Parsed {
    pub fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
    pub fn value(&self, name: &str) -> Option<&str> {
        self.flags.get(name).and_then(|v| v.last()).map(String::as_str)
    }
    pub fn values(&self, name: &str) -> Vec<String> {
        self.flags.get(name).cloned().unwrap_or_default()
    }
    pub fn bool(&self, name: &str) -> bool {
        match self.value(name) {
            None => false,
            Some(v) => !matches!(v, "false" | "0"),
        }
    }
}

/// A flag: its canonical long name, aliases, and whether it takes a value.
pub struct Flag(pub &'static str, pub &'static [&'static str], pub bool);

/// Flags up to the first positional argument; everything from there on is positional.
pub fn parse(args: &[String], flags: &[Flag]) -> Result<Parsed, String> {
    parse_with(args, flags, false)
}

/// Flags anywhere (before, between or after the positional arguments) up to a `--`, after
/// which everything is positional. Unlike urfave/cli, a boolean flag never takes the next word
/// as its value (runc's `kill ID --all KILL` reads `KILL` as the container id).
pub fn parse_interspersed(args: &[String], flags: &[Flag]) -> Result<Parsed, String> {
    parse_with(args, flags, true)
}

fn parse_with(args: &[String], flags: &[Flag], interspersed: bool) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            p.positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" {
            if interspersed {
                p.positional.push(a.clone());
                i += 1;
                continue;
            }
            p.positional.extend(args[i..].iter().cloned());
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(f) = flags.iter().find(|f| f.0 == name || f.1.contains(&name)) else {
            return Err(format!("flag provided but not defined: -{name}"));
        };
        let value = if f.2 {
            match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?
                }
            }
        } else {
            inline.unwrap_or_else(|| "true".into())
        };
        p.flags.entry(f.0.to_string()).or_default().push(value);
        i += 1;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_then_positionals() {
        let flags = [Flag("bundle", &["b"], true), Flag("detach", &["d"], false), Flag("env", &["e"], true)];
        let p = parse(&v(&["-b", "/x", "--detach", "--env=A=1", "-e", "B=2", "id", "sh", "-c", "true"]), &flags).unwrap();
        assert_eq!(p.value("bundle"), Some("/x"));
        assert!(p.bool("detach"));
        assert_eq!(p.values("env"), vec!["A=1", "B=2"]);
        assert_eq!(p.positional, v(&["id", "sh", "-c", "true"]));
        assert!(parse(&v(&["--nope"]), &flags).unwrap_err().contains("not defined"));
        assert!(parse(&v(&["--bundle"]), &flags).is_err());
        assert!(!parse(&v(&["--detach=false", "x"]), &flags).unwrap().bool("detach"));
        // Leading-only: a flag after the first positional is the command's.
        let p = parse(&v(&["id", "--bundle", "/x"]), &flags).unwrap();
        assert_eq!(p.value("bundle"), None);
        assert_eq!(p.positional, v(&["id", "--bundle", "/x"]));
    }

    #[test]
    fn interspersed_flags_after_the_id() {
        let flags = [Flag("bundle", &["b"], true), Flag("all", &["a"], false), Flag("force", &["f"], false)];
        // containerd's and podman's `create ID --bundle DIR`.
        let p = parse_interspersed(&v(&["id", "--bundle", "/x", "--pid-file=/p"]), &[Flag("bundle", &["b"], true), Flag("pid-file", &[], true)]).unwrap();
        assert_eq!(p.value("bundle"), Some("/x"));
        assert_eq!(p.value("pid-file"), Some("/p"));
        assert_eq!(p.positional, v(&["id"]));
        // A boolean flag between the id and the signal does not eat the signal.
        let p = parse_interspersed(&v(&["id", "--all", "KILL"]), &flags).unwrap();
        assert!(p.bool("all"));
        assert_eq!(p.positional, v(&["id", "KILL"]));
        let p = parse_interspersed(&v(&["id", "-f"]), &flags).unwrap();
        assert!(p.bool("force"));
        assert_eq!(p.positional, v(&["id"]));
        // `--` ends the flags: what follows is positional even if it looks like a flag.
        let p = parse_interspersed(&v(&["-b", "/x", "id", "--", "--all"]), &flags).unwrap();
        assert_eq!(p.positional, v(&["id", "--all"]));
        assert!(!p.bool("all"));
        // An unknown flag after the id is an error, not an argument silently dropped.
        assert!(parse_interspersed(&v(&["id", "--nope"]), &flags).unwrap_err().contains("not defined"));
        assert!(parse_interspersed(&v(&["id", "--bundle"]), &flags).unwrap_err().contains("needs an argument"));
    }
}
