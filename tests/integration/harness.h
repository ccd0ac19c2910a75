// Drives feature programs and the real `prewarm` CLI as child processes: pipes as stdio, no other
// inherited fds (prewarm refuses pipes other than stdio), reads with timeouts, never a stray child.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prewarm::test {

using namespace std::chrono_literals;
inline constexpr std::chrono::milliseconds kTimeout = 20s;

// A pipe end, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset();

 private:
  int fd_ = -1;
};

struct RunResult {
  int code = -1;  // as Child::wait, -1 on timeout
  std::string out, err;
};

// A child with pipes for fds 0, 1, 2 and nothing else open. Killed and reaped on destruction.
class Child {
 public:
  static Child spawn(const std::vector<std::string>& argv);
  // The same with `pass` (fds of the caller) open in the child as fds 3, 4, ... (a launch's
  // sockets, as systemd passes them).
  static Child spawn(const std::vector<std::string>& argv, const std::vector<int>& pass);
  Child(Child&& o) noexcept;
  ~Child();

  pid_t pid() const { return pid_; }
  void write(std::string_view text);
  void close_stdin() { in_.reset(); }
  // The next line of stdout without its newline; nullopt on EOF or timeout.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout = kTimeout);
  // Stdout not yet consumed and stderr up to EOF (or a short timeout): for failure messages.
  std::string leftovers();
  // The exit code, 128 + signal if killed, nullopt if still running after the timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = kTimeout);
  // Like Python's Popen.communicate: writes input, closes stdin, reads stdout and stderr to EOF
  // and waits for the exit. A child that exits without reading all its input (a restore that
  // refuses before it runs the app) is not an error: its exit code and output say what it did.
  RunResult communicate(std::string_view input, std::chrono::milliseconds timeout = kTimeout);

 private:
  Child() = default;
  // false if the child has closed its stdin (EPIPE); any other failure throws.
  bool write_unless_closed(std::string_view text);
  pid_t pid_ = -1;
  bool reaped_ = false;
  Fd in_, out_, err_;
  std::string out_buf_;
};

// Runs a command to completion with `input` on its stdin.
RunResult run(const std::vector<std::string>& argv, std::string_view input = {},
              std::chrono::milliseconds timeout = kTimeout);
RunResult prewarm(const std::vector<std::string>& args);
// Starts the pattern program (or a copy of it at `exe`) and returns it, blocked in its stdin
// read, with its ready line's fields (token, sum, pid). Throws if it does not get there.
std::pair<Child, std::map<std::string, std::string>> start_pattern(const std::filesystem::path& exe = PROG_pattern);

// `prewarm restore --images DIR`: the returned child becomes the snapshotted process.
Child restore(const std::filesystem::path& images);

// Waits until pid is blocked in read(0, ...): after a restore, the point where it is the
// snapshotted process again and waits for input.
bool wait_blocked_in_stdin_read(pid_t pid, std::chrono::milliseconds timeout = kTimeout);
// The tid of a lazy restore's page server thread (comm "prewarm-lazy") in pid, or 0 when it has
// none (not started, or done).
pid_t lazy_server_tid(pid_t pid);

// What a restore must reproduce, as text that compares line by line: every mapping (range,
// permissions, offset, name) and every fd but stdio (number and target; pipe and socket inodes
// numbered by first appearance, since a restore makes new ones).
std::vector<std::string> layout(pid_t pid);
// "" when equal (but for the restorer's one code page), else one line per difference: "- " only
// in before, "+ " only in after.
std::string layout_diff(const std::vector<std::string>& before, const std::vector<std::string>& after);

// A zdtm-style round trip: the original (left running, killed at the end of the test), its ready
// line's fields, and the restored process, blocked in read(0) waiting for its input.
struct RoundTrip {
  Child original;
  std::map<std::string, std::string> ready;
  Child restored;
};
class TempDir;
// Starts argv and waits for its "ready" line and for the read of stdin that follows it.
std::pair<Child, std::string> start_ready(const std::vector<std::string>& argv);
// Dumps a ready process into DIR/img, restores it, waits until the restored process reads stdin,
// and checks it has the original's mappings and fds (EXPECT). Throws if a step fails.
RoundTrip round_trip(Child original, const std::string& ready, const TempDir& dir);
RoundTrip round_trip(const std::vector<std::string>& argv, const TempDir& dir);
// The restored process's answer to `input`, which must be its last line before exit 0.
std::string answer(Child& restored, const std::string& input);

// "ready a=1 b=two" -> {ready: "", a: "1", b: "two"}
std::map<std::string, std::string> fields(std::string_view line);

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// `prewarm dump` ptraces a process that is not its child: without root, Yama's ptrace_scope >= 1
// forbids that, so such a test is skipped rather than failed.
class DumpTest : public ::testing::Test {
 protected:
  void SetUp() override;
};

}  // namespace prewarm::test
