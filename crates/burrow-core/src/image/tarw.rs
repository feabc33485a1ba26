//! Writing tar entries as burrow writes every archive it makes (`burrow-runtime export`, the
//! layers of `burrow build`): ustar headers (tar::Header) with pax extended headers where ustar
//! falls short (long names, large files or ids, extended attributes), entries named without "./"
//! as Docker names them.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;

pub use tar::EntryType;
use tar::Header as TarHeader;

/// One pax record: "LEN key=value\n", where LEN counts itself.
pub fn pax_record(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    buf.extend_from_slice(len.to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(key.as_bytes());
    buf.push(b'=');
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// One entry's header fields. `mode` may carry the file type bits (st_mode); only the
/// permission bits are written.
pub struct Meta<'a> {
    pub name: &'a [u8],
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    /// (major, minor) of a device node.
    pub dev: (u64, u64),
    /// Extended attributes, written as SCHILY.xattr pax records.
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// A ustar header. Names and link targets go in as bytes, cut at ustar's 100 (the pax header
/// before it holds the whole): tar::Header's setters take paths, and would split a long one into
/// ustar's prefix field instead. Numbers are capped at what ustar's octal fields hold, for the
/// same reason.
pub fn ustar(b: &Meta) -> io::Result<TarHeader> {
    let mut h = TarHeader::new_ustar();
    let old = h.as_old_mut();
    let n = b.name.len().min(100);
    old.name[..n].copy_from_slice(&b.name[..n]);
    let l = b.link.len().min(100);
    old.linkname[..l].copy_from_slice(&b.link[..l]);
    h.set_mode(b.mode & 0o7777);
    h.set_uid(b.uid.min(0o7777777));
    h.set_gid(b.gid.min(0o7777777));
    h.set_size(b.size.min(0o77777777777));
    h.set_mtime(b.mtime.max(0) as u64);
    h.set_entry_type(b.kind);
    if b.kind == EntryType::Char || b.kind == EntryType::Block {
        h.set_device_major(b.dev.0 as u32)?;
        h.set_device_minor(b.dev.1 as u32)?;
    }
    h.set_cksum();
    Ok(h)
}

/// Writes one entry, preceded by a pax header for what ustar cannot hold, then `data` (exactly
/// `m.size` bytes; tar::Builder pads it to the block).
pub fn append<W: Write>(out: &mut tar::Builder<W>, m: &Meta, data: impl Read) -> io::Result<()> {
    let mut pax = Vec::new();
    if m.name.len() > 100 {
        pax_record(&mut pax, "path", m.name);
    }
    if m.link.len() > 100 {
        pax_record(&mut pax, "linkpath", m.link);
    }
    if m.size > 0o77777777777 {
        pax_record(&mut pax, "size", m.size.to_string().as_bytes());
    }
    if m.uid > 0o7777777 {
        pax_record(&mut pax, "uid", m.uid.to_string().as_bytes());
    }
    if m.gid > 0o7777777 {
        pax_record(&mut pax, "gid", m.gid.to_string().as_bytes());
    }
    for (k, v) in m.xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)), v);
    }
    if !pax.is_empty() {
        let base = m.name.rsplit(|&c| c == b'/').find(|s| !s.is_empty()).unwrap_or(b"entry");
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(base);
        let x = ustar(&Meta {
            name: &pname,
            kind: EntryType::XHeader,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: pax.len() as u64,
            mtime: m.mtime,
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        })?;
        out.append(&x, &pax[..])?;
    }
    out.append(&ustar(m)?, data)
}

/// A file's content as the header promised it: `size` bytes, zeros after an early end (a
/// running container may shrink the file meanwhile); `short` counts the zeros.
pub struct Promised<R: Read> {
    pub inner: R,
    pub left: u64,
    pub short: u64,
}

impl<R: Read> Promised<R> {
    pub fn new(inner: R, size: u64) -> Self {
        Promised { inner, left: size, short: 0 }
    }
}

impl<R: Read> Read for Promised<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            self.short += want as u64;
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Extended attributes of an open file, except the kernel's own (system.*: ACLs) and those
/// `skip` refuses, sorted by name (the archive must not depend on the filesystem's order).
pub fn xattrs(fd: RawFd, skip: impl Fn(&[u8]) -> bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    // SAFETY (all calls below): valid descriptor, NUL-terminated names, buffers with their true lengths.
    let len = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
    if len <= 0 {
        return out;
    }
    let mut names = vec![0u8; len as usize + 256];
    let n = unsafe { libc::flistxattr(fd, names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if n <= 0 {
        return out;
    }
    names.truncate(n as usize);
    for name in names.split(|&c| c == 0).filter(|s| !s.is_empty() && !s.starts_with(b"system.") && !skip(s)) {
        let Ok(c) = CString::new(name) else { continue };
        let vlen = unsafe { libc::fgetxattr(fd, c.as_ptr(), std::ptr::null_mut(), 0) };
        if vlen < 0 {
            continue;
        }
        let mut value = vec![0u8; vlen as usize + 1];
        let len = unsafe { libc::fgetxattr(fd, c.as_ptr(), value.as_mut_ptr() as *mut libc::c_void, value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 512;

    fn meta<'a>(name: &'a [u8], kind: EntryType, mode: u32, gid: u64, size: u64) -> Meta<'a> {
        Meta { name, kind, mode, uid: 0, gid, size, mtime: 1_700_000_000, link: b"", dev: (0, 0), xattrs: &[] }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let mut b = Vec::new();
        pax_record(&mut b, "path", b"a");
        assert_eq!(b, b"9 path=a\n");
        // 9 bytes and a one-digit length would be 10, which has two digits: it settles at 11.
        let mut b = Vec::new();
        pax_record(&mut b, "path", b"ab");
        assert_eq!(b, b"11 path=ab\n");
        let long = vec![b'x'; 200];
        let mut b = Vec::new();
        pax_record(&mut b, "path", &long);
        let len: usize = std::str::from_utf8(&b[..b.iter().position(|&c| c == b' ').unwrap()]).unwrap().parse().unwrap();
        assert_eq!(len, b.len());
    }

    #[test]
    fn header_checksum_and_fields() {
        let h = ustar(&meta(b"etc/passwd", EntryType::Regular, 0o100644, 33, 30)).unwrap();
        let h = h.as_bytes();
        assert_eq!(h.len(), BLOCK);
        assert_eq!(&h[..11], b"etc/passwd\0");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[116..124], b"0000041\0");
        assert_eq!(&h[124..136], b"00000000036\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..265], b"ustar\x0000");
        let digits: Vec<u8> = h[148..156].iter().copied().take_while(|c| c.is_ascii_digit()).collect();
        let stored = u32::from_str_radix(std::str::from_utf8(&digits).unwrap(), 8).unwrap();
        let sum: u32 = h.iter().enumerate().map(|(i, &c)| if (148..156).contains(&i) { u32::from(b' ') } else { u32::from(c) }).sum();
        assert_eq!(stored, sum);
    }

    #[test]
    fn long_names_are_cut_in_the_header_and_whole_in_pax() {
        let name = vec![b'n'; 150];
        let h = ustar(&meta(&name, EntryType::Regular, 0o644, 0, 0)).unwrap();
        // Not split into ustar's prefix field: the pax path record names it.
        assert_eq!(&h.as_bytes()[..100], &name[..100]);
        assert!(h.as_bytes()[345..500].iter().all(|&c| c == 0));
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, &meta(&name, EntryType::Regular, 0o644, 0, 0), io::empty()).unwrap();
        let data = b.into_inner().unwrap();
        let mut a = tar::Archive::new(&data[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path_bytes().as_ref(), &name[..]);
    }

    #[test]
    fn a_file_that_shrank_is_padded_to_its_promised_size() {
        let mut p = Promised::new(&b"abc"[..], 5);
        let mut out = Vec::new();
        p.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc\0\0");
        assert_eq!(p.short, 2);
    }
}
