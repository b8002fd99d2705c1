"""The peak memory of this process's own image, for the child scripts that measure it.

Not `getrusage().ru_maxrss`: Linux carries the high-water RSS of the image a process replaces
across execve() into it, and subprocess starts a child by fork + exec of pytest, so a child of
a full suite run reports pytest's peak (253 MB seen in CI), and a growth measured against it
reads as none. `VmHWM` belongs to the address space exec made. Imports nothing, so it adds
nothing to what it measures."""


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")
