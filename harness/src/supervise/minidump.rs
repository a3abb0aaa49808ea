//! `crash.dmp`: the capture of [`super::trace`] as a standard minidump, the format crash tools read
//! (`minidump-stackwalk`, Breakpad, Crashpad, debuggers). It is written from what the tracer already
//! holds, once the process is gone: nothing attaches to the process a second time.
//!
//! Streams, all little-endian and laid out with the format types of `minidump-common`:
//!
//! - SystemInfo: x86-64, Linux, the kernel release, the number of CPUs and the CPU vendor.
//! - MiscInfo: the process id.
//! - ThreadList: every captured thread with its id, its register context (`CONTEXT_AMD64`, general
//!   purpose registers, segment selectors, flags and the x87/SSE state) and its stack copy.
//! - ThreadNames: `/proc/PID/task/TID/comm` of each thread.
//! - ModuleList: every file-backed object with an executable mapping: load address (its first mapping),
//!   size (to the end of its last mapping), path, and a CodeView record with the GNU build ID (the
//!   Breakpad `BpEL` form), so symbol stores and local debug files can be matched.
//! - MemoryList: the stack copies (the same bytes the thread entries point at).
//! - Exception (crashes only): the crashing thread, the signal number as the exception code, `si_code`
//!   as the flags, the fault address, and the crashing thread's context.
//! - LinuxMaps and LinuxCmdLine: `/proc/PID/maps` and `/proc/PID/cmdline` as read at the signal.
//!
//! x86-64 only, like the capture.

use minidump_common::format as md;
use scroll::ctx::{SizeWith, TryIntoCtx};
use scroll::{Pwrite, LE};

use super::trace::{Capture, Registers, SignalInfo};

/// The dump of a capture: a crash (with an Exception stream) when one of its threads is the crashed one,
/// a snapshot otherwise.
pub fn write(capture: &Capture) -> Vec<u8> {
    use md::MINIDUMP_STREAM_TYPE as S;
    let mut w = Writer::default();
    let crashed = capture.threads.iter().find(|t| t.crashed);
    let count = if crashed.is_some() { 9 } else { 8 };
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    w.put(md::MINIDUMP_HEADER {
        signature: md::MINIDUMP_SIGNATURE,
        version: md::MINIDUMP_VERSION,
        stream_count: count as u32,
        stream_directory_rva: md::MINIDUMP_HEADER::size_with(&LE) as u32,
        checksum: 0,
        time_date_stamp: time,
        flags: 0,
    });
    let directory = w.reserve(count * md::MINIDUMP_DIRECTORY::size_with(&LE));
    debug_assert_eq!(directory, md::MINIDUMP_HEADER::size_with(&LE));

    let mut streams = vec![(S::SystemInfoStream, system_info(&mut w))];
    let misc = w.put(md::MINIDUMP_MISC_INFO {
        size_of_info: md::MINIDUMP_MISC_INFO::size_with(&LE) as u32,
        flags1: md::MiscInfoFlags::MINIDUMP_MISC1_PROCESS_ID.bits(),
        process_id: capture.pid,
        process_create_time: 0,
        process_user_time: 0,
        process_kernel_time: 0,
    });
    streams.push((S::MiscInfoStream, misc));

    // Contexts and stacks first, so the thread entries can point at them.
    let mut entries = Vec::new();
    let mut memory = Vec::new();
    let mut crash_context = md::MINIDUMP_LOCATION_DESCRIPTOR::default();
    for t in &capture.threads {
        // A thread whose registers could not be read has no context (and is listed all the same).
        let context = match &t.regs {
            Some(regs) => {
                w.align(16);
                w.put(context_of(regs))
            }
            None => md::MINIDUMP_LOCATION_DESCRIPTOR::default(),
        };
        if t.crashed {
            crash_context = context;
        }
        let stack = match &t.stack {
            Some(s) => {
                w.align(16);
                let at = w.bytes(&s.bytes);
                let d = md::MINIDUMP_MEMORY_DESCRIPTOR { start_of_memory_range: s.start, memory: at };
                memory.push(d);
                d
            }
            None => md::MINIDUMP_MEMORY_DESCRIPTOR::default(),
        };
        entries.push(md::MINIDUMP_THREAD {
            thread_id: t.tid,
            suspend_count: 0,
            priority_class: 0,
            priority: 0,
            teb: t.regs.as_ref().map_or(0, |r| r.fs_base),
            stack,
            thread_context: context,
        });
    }
    streams.push((S::ThreadListStream, w.list(entries)));

    let names: Vec<md::MINIDUMP_THREAD_NAME> = capture
        .threads
        .iter()
        .map(|t| md::MINIDUMP_THREAD_NAME { thread_id: t.tid, thread_name_rva: w.string(&t.name).into() })
        .collect();
    streams.push((S::ThreadNamesStream, w.list(names)));

    let modules: Vec<md::MINIDUMP_MODULE> = modules_of(&capture.maps)
        .into_iter()
        .map(|m| {
            let name = w.string(&m.path);
            let cv_record = w.bytes(&codeview(&m.path));
            md::MINIDUMP_MODULE {
                base_of_image: m.base,
                size_of_image: u32::try_from(m.end - m.base).unwrap_or(u32::MAX),
                module_name_rva: name,
                cv_record,
                ..Default::default()
            }
        })
        .collect();
    streams.push((S::ModuleListStream, w.list(modules)));
    streams.push((S::MemoryListStream, w.list(memory)));

    if let Some(t) = crashed {
        let info = capture.siginfo.unwrap_or(SignalInfo {
            signo: capture.signal as i32,
            code: 0,
            errno: 0,
            addr: None,
        });
        w.align(8);
        let exception = w.put(md::MINIDUMP_EXCEPTION_STREAM {
            thread_id: t.tid,
            __align: 0,
            exception_record: md::MINIDUMP_EXCEPTION {
                exception_code: info.signo as u32,
                exception_flags: info.code as u32,
                exception_record: 0,
                exception_address: info.addr.unwrap_or(0),
                number_parameters: 0,
                __align: 0,
                exception_information: [0; 15],
            },
            thread_context: crash_context,
        });
        streams.push((S::ExceptionStream, exception));
    }
    streams.push((S::LinuxMaps, w.bytes(capture.maps.as_bytes())));
    streams.push((S::LinuxCmdLine, w.bytes(&capture.cmdline)));
    assert_eq!(streams.len(), count, "the directory was sized for every stream");

    for (i, (kind, location)) in streams.into_iter().enumerate() {
        let entry = md::MINIDUMP_DIRECTORY { stream_type: kind as u32, location };
        w.buf
            .pwrite_with(entry, directory + i * md::MINIDUMP_DIRECTORY::size_with(&LE), LE)
            .expect("the directory was reserved");
    }
    w.buf
}

/// The dump being laid out: everything is appended, and found again by its location.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, to: usize) {
        let n = self.buf.len().next_multiple_of(to);
        self.buf.resize(n, 0);
    }

    fn reserve(&mut self, n: usize) -> usize {
        self.align(4);
        let at = self.buf.len();
        self.buf.resize(at + n, 0);
        at
    }

    fn location(at: usize, len: usize) -> md::MINIDUMP_LOCATION_DESCRIPTOR {
        md::MINIDUMP_LOCATION_DESCRIPTOR { data_size: len as u32, rva: at as u32 }
    }

    fn patch(&mut self, at: usize, value: u32) {
        self.buf[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Appends one format struct.
    fn put<T>(&mut self, value: T) -> md::MINIDUMP_LOCATION_DESCRIPTOR
    where
        T: SizeWith<scroll::Endian> + TryIntoCtx<scroll::Endian, Error = scroll::Error>,
    {
        let len = T::size_with(&LE);
        let at = self.reserve(len);
        self.buf.pwrite_with(value, at, LE).expect("the space was reserved");
        Self::location(at, len)
    }

    /// Appends raw bytes.
    fn bytes(&mut self, data: &[u8]) -> md::MINIDUMP_LOCATION_DESCRIPTOR {
        let at = self.reserve(0);
        self.buf.extend_from_slice(data);
        Self::location(at, data.len())
    }

    /// Appends a `MINIDUMP_STRING` (byte length, UTF-16LE, NUL) and returns its offset.
    fn string(&mut self, s: &str) -> u32 {
        let units: Vec<u16> = s.encode_utf16().collect();
        let at = self.reserve(0);
        self.buf.extend_from_slice(&((units.len() * 2) as u32).to_le_bytes());
        for u in units.into_iter().chain([0]) {
            self.buf.extend_from_slice(&u.to_le_bytes());
        }
        at as u32
    }

    /// Appends a list stream: a 32-bit count, then the entries.
    fn list<T>(&mut self, entries: Vec<T>) -> md::MINIDUMP_LOCATION_DESCRIPTOR
    where
        T: SizeWith<scroll::Endian> + TryIntoCtx<scroll::Endian, Error = scroll::Error>,
    {
        let size = T::size_with(&LE);
        let at = self.reserve(4 + entries.len() * size);
        self.patch(at, entries.len() as u32);
        for (i, e) in entries.into_iter().enumerate() {
            self.buf.pwrite_with(e, at + 4 + i * size, LE).expect("the space was reserved");
        }
        Self::location(at, self.buf.len() - at)
    }
}

fn system_info(w: &mut Writer) -> md::MINIDUMP_LOCATION_DESCRIPTOR {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = std::fs::read_to_string("/proc/sys/kernel/version").unwrap_or_default();
    let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().unwrap_or(0));
    let (major, minor, build) =
        (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
    };
    let mut cpu = [0u8; 24];
    let vendor = field("vendor_id").unwrap_or_default();
    let n = vendor.len().min(12);
    cpu[..n].copy_from_slice(&vendor.as_bytes()[..n]);
    let number = |name: &str| field(name).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0);
    let (family, model, stepping) = (number("cpu family"), number("model"), number("stepping"));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(255) as u8);
    let csd = w.string(&format!("{} {}", release.trim(), version.trim()));
    w.align(4);
    w.put(md::MINIDUMP_SYSTEM_INFO {
        processor_architecture: md::ProcessorArchitecture::PROCESSOR_ARCHITECTURE_AMD64 as u16,
        processor_level: family,
        processor_revision: (model & 0xff) << 8 | (stepping & 0xff),
        number_of_processors: cpus,
        product_type: 0,
        major_version: major,
        minor_version: minor,
        build_number: build,
        platform_id: md::PlatformId::Linux as u32,
        csd_version_rva: csd,
        suite_mask: 0,
        reserved2: 0,
        cpu: md::CPU_INFORMATION { data: cpu },
    })
}

/// The minidump register context of a thread.
pub fn context_of(r: &Registers) -> md::CONTEXT_AMD64 {
    let flags = md::ContextFlagsAmd64::CONTEXT_AMD64_FULL | md::ContextFlagsAmd64::CONTEXT_AMD64_SEGMENTS;
    let mut float_save = [0u8; 512];
    let mut mx_csr = 0;
    if let Some(fx) = r.fxsave.as_deref().filter(|f| f.len() == 512) {
        float_save.copy_from_slice(fx);
        mx_csr = u32::from_le_bytes(fx[24..28].try_into().expect("4 bytes"));
    }
    md::CONTEXT_AMD64 {
        context_flags: flags.bits(),
        mx_csr,
        cs: r.cs as u16,
        ds: r.ds as u16,
        es: r.es as u16,
        fs: r.fs as u16,
        gs: r.gs as u16,
        ss: r.ss as u16,
        eflags: r.eflags as u32,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rbx: r.rbx,
        rsp: r.rsp,
        rbp: r.rbp,
        rsi: r.rsi,
        rdi: r.rdi,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        float_save,
        ..Default::default()
    }
}

/// One mapped object: where it is loaded and what file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub base: u64,
    pub end: u64,
}

/// The objects of a maps text with at least one executable mapping, in address order: from the first
/// mapping of each (path, inode) to the end of its last.
pub fn modules_of(maps: &str) -> Vec<Module> {
    let mut modules: Vec<(Module, String, bool)> = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(perms), Some(inode)) = (f.first(), f.get(1), f.get(4)) else { continue };
        let path = f.get(5..).map(|p| p.join(" ")).unwrap_or_default();
        if !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        let exec = perms.contains('x');
        match modules.iter_mut().find(|(m, i, _)| m.path == path && i == inode) {
            Some((m, _, x)) => {
                m.base = m.base.min(a);
                m.end = m.end.max(b);
                *x |= exec;
            }
            None => modules.push((Module { path, base: a, end: b }, inode.to_string(), exec)),
        }
    }
    let mut modules: Vec<Module> = modules.into_iter().filter(|(_, _, x)| *x).map(|(m, _, _)| m).collect();
    modules.sort_by_key(|m| m.base);
    modules
}

/// The CodeView record of an ELF object: `BpEL` and its GNU build ID, or, without one, the first 16
/// bytes of `.text` folded by XOR (what Breakpad uses instead). Empty if the file cannot be read.
pub fn codeview(path: &str) -> Vec<u8> {
    use object::{Object, ObjectSection};
    let Ok(data) = std::fs::read(path) else { return Vec::new() };
    let Ok(file) = object::File::parse(&*data) else { return Vec::new() };
    let id = match file.build_id() {
        Ok(Some(id)) if !id.is_empty() => id.to_vec(),
        _ => {
            let text = file.section_by_name(".text").and_then(|s| s.data().ok()).unwrap_or_default();
            let mut id = vec![0u8; 16];
            for (i, b) in text.iter().take(4096).enumerate() {
                id[i % 16] ^= b;
            }
            id
        }
    };
    let mut record = (md::CvSignature::Elf as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&id);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervise::trace::{StackCopy, ThreadCapture};
    use minidump::{Minidump, MinidumpException, MinidumpModuleList, MinidumpThreadList};

    fn regs(rip: u64, rsp: u64) -> Registers {
        Registers {
            rip,
            rsp,
            rbp: rsp + 0x40,
            rax: 0x1111,
            r15: 0xf15,
            fs_base: 0x7000,
            ..Default::default()
        }
    }

    /// A capture of a made-up two-thread process mapping this test binary.
    fn capture() -> Capture {
        let exe = std::env::current_exe().unwrap().display().to_string();
        let maps = format!(
            "555555554000-555555556000 r--p 00000000 fe:00 42 {exe}\n\
             555555556000-555555560000 r-xp 00002000 fe:00 42 {exe}\n\
             555555560000-555555562000 rw-p 0000c000 fe:00 42 {exe}\n\
             555555562000-555555583000 rw-p 00000000 00:00 0 [heap]\n\
             7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]\n"
        );
        let thread = |tid, crashed, rip, sp: u64| ThreadCapture {
            tid,
            name: format!("t{tid}"),
            crashed,
            pcs: vec![rip],
            note: None,
            regs: Some(Registers { fxsave: Some(vec![7; 512]), ..regs(rip, sp) }),
            stack: Some(StackCopy { start: sp - 128, bytes: (0..=255).cycle().take(1024).collect() }),
        };
        Capture {
            pid: 4242,
            signal: nix::sys::signal::Signal::SIGSEGV,
            siginfo: Some(SignalInfo { signo: 11, code: 1, errno: 0, addr: Some(0x10) }),
            cmdline: b"app\0--flag\0".to_vec(),
            maps,
            threads: vec![
                thread(4243, true, 0x555555557123, 0x7ffc00010000),
                thread(4242, false, 0x555555558000, 0x7ffc00020000),
            ],
        }
    }

    #[test]
    fn the_dump_reads_back_with_the_captured_threads_modules_and_exception() {
        let c = capture();
        let bytes = write(&c);
        assert_eq!(&bytes[..4], b"MDMP");
        let dump = Minidump::read(bytes).unwrap();

        let threads: MinidumpThreadList = dump.get_stream().unwrap();
        let ids: Vec<u32> = threads.threads.iter().map(|t| t.raw.thread_id).collect();
        assert_eq!(ids, [4243, 4242]);
        let sys = dump.get_stream::<minidump::MinidumpSystemInfo>().unwrap();
        assert_eq!(sys.cpu, minidump::system_info::Cpu::X86_64);
        assert_eq!(sys.os, minidump::system_info::Os::Linux);
        let misc = dump.get_stream::<minidump::MinidumpMiscInfo>().ok();
        let memory = dump.get_stream::<minidump::MinidumpMemoryList>().unwrap();
        assert_eq!(memory.iter().count(), 2);
        for (t, want) in threads.threads.iter().zip(&c.threads) {
            let ctx = t.context(&sys, misc.as_ref()).unwrap();
            let minidump::MinidumpRawContext::Amd64(raw) = &ctx.raw else { panic!("not amd64") };
            let r = want.regs.as_ref().unwrap();
            assert_eq!((raw.rip, raw.rsp, raw.rbp, raw.rax, raw.r15), (r.rip, r.rsp, r.rbp, r.rax, r.r15));
            assert_eq!(raw.float_save, [7; 512]);
            let s = want.stack.as_ref().unwrap();
            assert_eq!(t.raw.stack.start_of_memory_range, s.start);
            let stack = memory.memory_at_address(s.start).expect("the stack is in the memory list");
            assert_eq!((stack.base_address, stack.bytes), (s.start, &s.bytes[..]));
        }
        let misc = misc.expect("a MiscInfo stream");
        assert_eq!(misc.raw.process_id(), Some(&4242));
        let names = dump.get_stream::<minidump::MinidumpThreadNames>().unwrap();
        assert_eq!(names.get_name(4242).as_deref(), Some("t4242"));

        let modules: MinidumpModuleList = dump.get_stream().unwrap();
        let exe = std::env::current_exe().unwrap().display().to_string();
        use minidump::Module as _;
        let main = modules.iter().find(|m| m.code_file() == exe).expect("the executable is listed");
        assert_eq!((main.base_address(), main.size()), (0x555555554000, 0xe000));
        assert_eq!(modules.iter().count(), 1, "heap and stack are no modules");
        let code_id = main.code_identifier().expect("a build id").to_string();
        assert!(codeview(&exe).len() > 4 && !code_id.is_empty());

        let exception: MinidumpException = dump.get_stream().unwrap();
        assert_eq!(exception.raw.thread_id, 4243);
        assert_eq!(exception.raw.exception_record.exception_code, 11);
        assert_eq!(exception.raw.exception_record.exception_flags, 1);
        assert_eq!(exception.raw.exception_record.exception_address, 0x10);
        let reason = exception.get_crash_reason(sys.os, sys.cpu).to_string();
        assert!(reason.contains("SIGSEGV") && reason.contains("SEGV_MAPERR"), "{reason}");

        let maps = dump.get_stream::<minidump::MinidumpLinuxMaps>().unwrap();
        assert_eq!(maps.memory_map_count(), 5);
    }

    #[test]
    fn a_snapshot_has_no_exception_stream() {
        let mut c = capture();
        for t in &mut c.threads {
            t.crashed = false;
        }
        // A thread that could not be stopped: listed, with neither context nor stack.
        c.threads[1].regs = None;
        c.threads[1].stack = None;
        let dump = Minidump::read(write(&c)).unwrap();
        assert!(dump.get_stream::<MinidumpException>().is_err());
        let threads: MinidumpThreadList = dump.get_stream().unwrap();
        assert_eq!(threads.threads.len(), 2);
        let sys = dump.get_stream::<minidump::MinidumpSystemInfo>().unwrap();
        assert!(threads.threads[0].context(&sys, None).is_some());
        assert!(threads.threads[1].context(&sys, None).is_none());
        assert_eq!(dump.get_stream::<minidump::MinidumpMemoryList>().unwrap().iter().count(), 1);
    }

    #[test]
    fn modules_span_every_mapping_of_their_file() {
        let maps = "1000-2000 r--p 00000000 fe:00 1 /bin/app\n2000-3000 r-xp 00001000 fe:00 1 /bin/app\n\
                    3000-4000 rw-p 00000000 00:00 0 \n5000-6000 r--p 00000000 fe:00 2 /usr/share/data.bin\n\
                    7000-8000 r-xp 00000000 fe:00 3 /lib/my lib.so\n9000-a000 rw-p 00001000 fe:00 3 /lib/my lib.so\n";
        let m = modules_of(maps);
        let got: Vec<(&str, u64, u64)> = m.iter().map(|m| (m.path.as_str(), m.base, m.end)).collect();
        assert_eq!(got, [("/bin/app", 0x1000, 0x3000), ("/lib/my lib.so", 0x7000, 0xa000)]);
    }
}
