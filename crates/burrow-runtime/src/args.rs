//! A small runc-compatible argument parser: global flags before the command, the command's
//! flags before its first positional argument (as urfave/cli does for runc, so that
//! `exec ID sh -c ...` leaves `-c` to the command). `--flag=value` and `--flag value` both work.

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

pub fn parse(args: &[String], flags: &[Flag]) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            p.positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !a.starts_with('-') || a == "-" || !p.positional.is_empty() {
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
    }
}
