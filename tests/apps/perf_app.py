# Maps a perf_event ring buffer (the stand-in for GPU/DRM mappings: VmFlags pf io dc de dd),
# closes the fd, sends READY=1 and idles: prewarm must refuse to snapshot it.
import ctypes
import os
import socket
import time

libc = ctypes.CDLL(None, use_errno=True)
attr = (ctypes.c_uint8 * 128)()
ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)  # type=PERF_TYPE_SOFTWARE, size=128
# config = PERF_COUNT_SW_DUMMY (9); flags: disabled
ctypes.memmove(ctypes.addressof(attr) + 8, (ctypes.c_uint64 * 1)(9), 8)
libc.syscall.restype = ctypes.c_long
fd = libc.syscall(298, attr, 0, -1, -1, 0)  # perf_event_open
if fd < 0:
    raise OSError(ctypes.get_errno(), "perf_event_open")
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
if libc.mmap(None, 2 * 4096, 3, 1, fd, 0) in (None, ctypes.c_void_p(-1).value):
    raise OSError(ctypes.get_errno(), "mmap perf ring")
os.close(fd)
path = os.environ.get("NOTIFY_SOCKET")
if path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect("\0" + path[1:] if path.startswith("@") else path)
        s.send(b"READY=1")
while True:
    time.sleep(1)
