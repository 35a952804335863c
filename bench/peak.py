#!/usr/bin/env python3
"""bench/peak.py - runs a command and prints its wall time and peak memory.

    bench/peak.py OUT ERR CMD...

CMD's stdout and stderr go to the files OUT and ERR. Prints one line:
"<seconds> <peak RssAnon MiB> <peak RssFile MiB> <peak RSS MiB>". RssAnon and RssFile
are sampled from /proc/PID/status every millisecond (a command of a few tens of
milliseconds is sampled tens of times, where a shell loop would miss it); the peak RSS is
the kernel's own (ru_maxrss from wait4), exact but anonymous and file-backed together.
Exits with the command's status.
"""
import os
import subprocess
import sys
import time


def sample(pid):
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssFile:"):
                    file = int(line.split()[1])
    except OSError:
        pass
    return anon, file


def main():
    out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    start = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        child = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
        anon = file = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            a, f = sample(child.pid)
            anon, file = max(anon, a), max(file, f)
            time.sleep(0.001)
    seconds = time.monotonic() - start
    print(f"{seconds:.2f} {anon / 1024:.1f} {file / 1024:.1f} {usage.ru_maxrss / 1024:.1f}")
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
