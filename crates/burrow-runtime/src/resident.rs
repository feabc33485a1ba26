//! What a process that stays alive (a monitor, the network owner) gives back once it has
//! started. Its resident memory is mostly its binary's code (the kernel maps the file in
//! 64-128 KiB blocks around each page touched), and most of the code it ran to start (argument
//! parsing, config and state files, spawning the container's `create`, setting up the network)
//! is not run again while it waits. Dropping the mappings of its read-only file segments lets
//! only what the wait touches come back. The pages stay in the page cache (shared, nothing is
//! read again from disk); only this process's mappings go.

/// Drops this process's mappings of its own binary's text and read-only data (the segments
/// mapped from the file and never written: not the relocated RELRO part, not .data), and the
/// heap's free pages (malloc_trim).
pub fn shed() {
    // SAFETY: plain libc call; it only returns free memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let (Ok(maps), Ok(exe)) = (std::fs::read_to_string("/proc/self/maps"), std::fs::read_link("/proc/self/exe")) else { return };
    let exe = exe.to_string_lossy();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let f: Vec<&str> = line.split_whitespace().collect();
        let [range, perms, offset, _, _, path @ ..] = f.as_slice() else { continue };
        if path.join(" ") != *exe {
            continue;
        }
        // The text, and the first segment (ELF headers, .rodata, .eh_frame): the RELRO segment
        // is r--p too, but at a later offset, and its pages hold relocated pointers that only
        // exist in this process: dropping those would lose them.
        let clean = *perms == "r-xp" || (*perms == "r--p" && u64::from_str_radix(offset, 16) == Ok(0));
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        if clean && end > start {
            // SAFETY: a mapping of the file that was never written (no private copy to lose):
            // its pages fault in again from the page cache when used.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}
