// Package testprog holds programs that tests run inside containers. They
// are Python, run by the host's /usr/bin/python3: programs no one here
// wrote, as the migration promises to handle.
package testprog

// Python is the interpreter the programs need.
const Python = "/usr/bin/python3"

// Counter serves one TCP connection on :7000 and answers each line with
// "N:line", N counting lines in the process's memory — so a restored
// process that lost its state answers with the wrong number.
const Counter = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(16)
n = 0
c, _ = s.accept(); f = c.makefile("rwb", buffering=0)
for line in f:
    n += 1
    f.write(b"%d:" % n + line)
`

// Multi has two processes and several threads: the parent serves each TCP
// connection on :7000 in a thread (all sharing one counter), a forked child
// echoes UDP datagrams on :7001 with its own counter.
const Multi = `
import os, socket, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 7001))
if os.fork() == 0:
    seen = 0
    while True:
        data, addr = u.recvfrom(2048)
        seen += 1
        u.sendto(b"%d:" % seen + data, addr)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(64)
lock = threading.Lock(); state = {"n": 0}
def serve(c):
    f = c.makefile("rwb", buffering=0)
    for line in f:
        with lock:
            state["n"] += 1
            n = state["n"]
        f.write(b"%d:" % n + line)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`

// Args returns the argv that runs prog.
func Args(prog string) []string { return []string{Python, "-u", "-c", prog} }

// Memory holds MiB of distinct pages (its first argument, default 64) and
// serves one TCP connection on :7000, answering each line with
// "N:line:ok" while every page still holds what it was given, and
// "N:line:BAD" otherwise — a post-copy that lost or mixed up a page shows.
const Memory = `
import hashlib, socket, sys
mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
buf = bytearray(mib << 20)
for p in range(0, len(buf), 4096):
    buf[p:p+4096] = (p.to_bytes(8, "little") * 512)
want = hashlib.sha256(buf).digest()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(16)
n = 0
c, _ = s.accept(); f = c.makefile("rwb", buffering=0)
for line in f:
    n += 1
    ok = hashlib.sha256(buf).digest() == want
    f.write(b"%d:%s:%s\n" % (n, line.strip(), b"ok" if ok else b"BAD"))
`

// Ticker serves one TCP connection on :7000 and writes "N\n" to it every
// 5 ms on its own, N counting up from 1, while a thread reads and
// discards what the client sends: a connection broken or stalled
// anywhere, either way, shows as an error or a gap without the client
// having to ask. A failed read is retried, not fatal: the program
// outlives a moment where its socket refuses it (TCP repair mode).
const Ticker = `
import socket, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(16)
c, _ = s.accept()
def drain():
    while True:
        try:
            if not c.recv(65536):
                return
        except OSError:
            time.sleep(0.001)
threading.Thread(target=drain, daemon=True).start()
n = 0
while True:
    n += 1
    c.sendall(b"%d\n" % n)
    time.sleep(0.005)
`
