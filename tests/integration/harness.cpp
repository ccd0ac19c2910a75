// The process helpers behind the integration tests (see harness.h).
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace prewarm::test {
namespace {

using Clock = std::chrono::steady_clock;

// A child that died must not take the test down with SIGPIPE when it is written to.
[[maybe_unused]] const bool ignore_sigpipe = (signal(SIGPIPE, SIG_IGN), true);

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::pair<Fd, Fd> make_pipe() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) fail("pipe2");
  return {Fd(p[0]), Fd(p[1])};
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Appends what fd has to buf, waiting at most until deadline; false on EOF, error or timeout.
bool read_some(int fd, std::string& buf, Clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
  char chunk[4096];
  ssize_t n = read(fd, chunk, sizeof chunk);
  if (n <= 0) return false;
  buf.append(chunk, static_cast<size_t>(n));
  return true;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void Fd::reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

Child Child::spawn(const std::vector<std::string>& argv) { return spawn(argv, {}); }

Child Child::spawn(const std::vector<std::string>& argv, const std::vector<int>& pass) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto [in_r, in_w] = make_pipe();
  auto [out_r, out_w] = make_pipe();
  auto [err_r, err_w] = make_pipe();
  Child c;
  c.pid_ = fork();
  if (c.pid_ < 0) fail("fork");
  if (c.pid_ == 0) {
    // Only async-signal-safe calls between fork and exec.
    dup2(in_r.get(), 0);
    dup2(out_w.get(), 1);
    dup2(err_w.get(), 2);
    // Out of the way first, so that passing fd 4 as 3 and 3 as 4 works too.
    const int high = 1000;
    for (size_t i = 0; i < pass.size(); ++i) dup2(pass[i], high + static_cast<int>(i));
    for (size_t i = 0; i < pass.size(); ++i) dup2(high + static_cast<int>(i), 3 + static_cast<int>(i));
    close_range(3 + static_cast<unsigned>(pass.size()), ~0U,
                0);  // the harness leaks fds (251, 63) that prewarm would rightly refuse
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  c.in_ = std::move(in_w);
  c.out_ = std::move(out_r);
  c.err_ = std::move(err_r);
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)),
      reaped_(o.reaped_),
      in_(std::move(o.in_)),
      out_(std::move(o.out_)),
      err_(std::move(o.err_)),
      out_buf_(std::move(o.out_buf_)) {}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Child::write_unless_closed(std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(in_.get(), text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EPIPE) return false;
    if (n <= 0) fail("write to child stdin");
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void Child::write(std::string_view text) {
  if (!write_unless_closed(text)) fail("write to child stdin");
}

std::optional<std::string> Child::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto nl = out_buf_.find('\n'); nl != std::string::npos) {
      std::string line = out_buf_.substr(0, nl);
      out_buf_.erase(0, nl + 1);
      return line;
    }
    if (!read_some(out_.get(), out_buf_, deadline)) return std::nullopt;
  }
}

std::string Child::leftovers() {
  std::string err;
  const auto deadline = Clock::now() + 1s;
  while (read_some(err_.get(), err, deadline)) {}
  return "stdout: " + std::exchange(out_buf_, {}) + "\nstderr: " + err;
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  for (pid_t rc; (rc = waitpid(pid_, &status, WNOHANG)) <= 0;) {
    if (rc < 0) fail("waitpid");
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
  reaped_ = true;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RunResult Child::communicate(std::string_view input, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  write_unless_closed(input);
  close_stdin();
  // Read both pipes together so neither can fill up and stall the child.
  RunResult r;
  r.out = std::exchange(out_buf_, {});
  bool out_open = true, err_open = true;
  while ((out_open || err_open) && Clock::now() < deadline) {
    pollfd p[2] = {{out_open ? out_.get() : -1, POLLIN, 0}, {err_open ? err_.get() : -1, POLLIN, 0}};
    if (poll(p, 2, remaining_ms(deadline)) <= 0) break;
    if (p[0].revents) out_open = read_some(out_.get(), r.out, deadline);
    if (p[1].revents) err_open = read_some(err_.get(), r.err, deadline);
  }
  r.code = wait(std::chrono::milliseconds(remaining_ms(deadline))).value_or(-1);
  return r;
}

RunResult run(const std::vector<std::string>& argv, std::string_view input,
              std::chrono::milliseconds timeout) {
  return Child::spawn(argv).communicate(input, timeout);
}

RunResult prewarm(const std::vector<std::string>& args) {
  std::vector<std::string> argv{PREWARM_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r = run(argv, {}, 60s);
  // The .pagemap copies of the tests must really have dumped through the fallback.
  const char* forced = std::getenv("PREWARM_FORCE_PAGEMAP_FALLBACK");
  if (!args.empty() && args[0] == "dump" && r.code == 0 && forced && std::string(forced) == "1" &&
      r.err.find("found with pagemap)") == std::string::npos) {
    r.code = 1;
    r.err += "\nharness: PREWARM_FORCE_PAGEMAP_FALLBACK=1, but the dump did not use the pagemap fallback";
  }
  return r;
}

std::pair<Child, std::map<std::string, std::string>> start_pattern(const std::filesystem::path& exe) {
  Child c = Child::spawn({exe.string()});
  auto ready = c.read_line();
  if (!ready || !wait_blocked_in_stdin_read(c.pid()))
    throw std::runtime_error("pattern did not get ready: " + c.leftovers());
  return {std::move(c), fields(*ready)};
}

Child restore(const std::filesystem::path& images) {
  // PREWARM_TEST_LAZY=1: every round trip restores lazily (restorer/lazy.h).
  if (const char* lazy = std::getenv("PREWARM_TEST_LAZY"); lazy && *lazy == '1')
    return Child::spawn({PREWARM_BIN, "restore", "--lazy", "--images", images.string()});
  return Child::spawn({PREWARM_BIN, "restore", "--images", images.string()});
}

// A thread that exits between the listing and the read (the server when it is done) fails the
// read with ESRCH: it is not the server, and no exception.
pid_t lazy_server_tid(pid_t pid) {
  std::error_code ec;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    const int fd = ::open((t.path() / "comm").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char comm[32];
    const ssize_t n = ::read(fd, comm, sizeof comm);
    ::close(fd);
    if (n > 0 && std::string_view(comm, static_cast<size_t>(n)) == "prewarm-lazy\n") return std::stoi(t.path().filename());
  }
  return 0;
}

// Under PREWARM_TEST_LAZY the page server's thread and region remain until every page is in;
// the comparisons that follow are of the app itself, so they wait for it to go.
static bool lazy_server_gone(pid_t pid, Clock::time_point deadline) {
  if (const char* lazy = std::getenv("PREWARM_TEST_LAZY"); !lazy || *lazy != '1') return true;
  for (;;) {
    if (lazy_server_tid(pid) == 0) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
}

bool wait_blocked_in_stdin_read(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string path = "/proc/" + std::to_string(pid) + "/syscall";
  do {
    // "0 0x0 ..." is read(2) on fd 0; a running task shows "running".
    if (read_text(path).starts_with("0 0x0 ")) return lazy_server_gone(pid, deadline);
    std::this_thread::sleep_for(5ms);
  } while (Clock::now() < deadline);
  return false;
}

std::vector<std::string> layout(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::vector<std::string> out;
  std::istringstream maps(read_text(proc + "/maps"));
  for (std::string line; std::getline(maps, line);) {
    std::istringstream f(line);
    std::string range, perms, offset, dev, inode, name;
    f >> range >> perms >> offset >> dev >> inode;
    std::getline(f >> std::ws, name);
    out.push_back(range + " " + perms + " " + offset + " " + name);
  }
  std::vector<std::pair<int, std::string>> fds;
  for (const auto& e : std::filesystem::directory_iterator(proc + "/fd")) {
    int fd = std::stoi(e.path().filename().string());
    if (fd > 2) fds.emplace_back(fd, std::filesystem::read_symlink(e.path()).string());
  }
  std::sort(fds.begin(), fds.end());
  std::map<std::string, int> channels;  // "pipe:[123]" -> 1, ... in fd order
  for (auto& [fd, target] : fds) {
    if (target.starts_with("pipe:[") || target.starts_with("socket:[")) {
      auto [it, fresh] = channels.emplace(target, static_cast<int>(channels.size()) + 1);
      target = target.substr(0, target.find('[')) + "[#" + std::to_string(it->second) + "]";
    }
    out.push_back("fd " + std::to_string(fd) + " -> " + target);
  }
  return out;
}

std::pair<Child, std::string> start_ready(const std::vector<std::string>& argv) {
  Child original = Child::spawn(argv);
  auto ready = original.read_line();
  if (!ready || !ready->starts_with("ready"))
    throw std::runtime_error(argv[0] + " did not get ready: " + ready.value_or("") + original.leftovers());
  if (!wait_blocked_in_stdin_read(original.pid())) throw std::runtime_error("not blocked in read(0)");
  return {std::move(original), *ready};
}

RoundTrip round_trip(Child original, const std::string& ready, const TempDir& dir) {
  const auto before = layout(original.pid());
  auto dump = prewarm({"dump", "--pid", std::to_string(original.pid()), "--images", dir / "img"});
  if (dump.code != 0) throw std::runtime_error("dump exit " + std::to_string(dump.code) + ": " + dump.err);
  Child restored = restore(dir / "img");
  if (!wait_blocked_in_stdin_read(restored.pid()))
    throw std::runtime_error("restored process never read stdin: " + restored.leftovers());
  const auto diff = layout_diff(before, layout(restored.pid()));
  EXPECT_TRUE(diff.empty()) << "mappings or fds differ after restore:\n" << diff;
  return {std::move(original), fields(ready), std::move(restored)};
}

RoundTrip round_trip(const std::vector<std::string>& argv, const TempDir& dir) {
  auto [original, ready] = start_ready(argv);
  return round_trip(std::move(original), ready, dir);
}

std::string answer(Child& restored, const std::string& input) {
  restored.write(input + "\n");
  auto line = restored.read_line();
  EXPECT_TRUE(line) << restored.leftovers();
  EXPECT_EQ(restored.wait(), 0) << restored.leftovers();
  return line.value_or("");
}

std::string layout_diff(const std::vector<std::string>& before, const std::vector<std::string>& after) {
  std::string diff;
  for (const auto& l : before)
    if (std::find(after.begin(), after.end(), l) == after.end()) diff += "- " + l + "\n";
  bool restorer_code_seen = false;
  for (const auto& l : after) {
    if (std::find(before.begin(), before.end(), l) != before.end()) continue;
    // The restorer blob cannot unmap the code it runs: restorer/blob/plan_abi.h documents that
    // one anonymous r-x mapping stays. Allow exactly one, of at most 64 KiB.
    unsigned long start = 0, end = 0;
    if (!restorer_code_seen && std::sscanf(l.c_str(), "%lx-%lx r-xp 00000000 ", &start, &end) == 2 &&
        l.ends_with("r-xp 00000000 ") && end - start <= 64 * 1024) {
      restorer_code_seen = true;
      continue;
    }
    diff += "+ " + l + "\n";
  }
  return diff;
}

std::map<std::string, std::string> fields(std::string_view line) {
  std::map<std::string, std::string> out;
  std::istringstream words{std::string(line)};
  for (std::string w; words >> w;) {
    auto eq = w.find('=');
    out[w.substr(0, eq)] = eq == std::string::npos ? "" : w.substr(eq + 1);
  }
  return out;
}

void DumpTest::SetUp() {
  const std::string scope = read_text("/proc/sys/kernel/yama/ptrace_scope");
  if (geteuid() != 0 && !scope.empty() && !scope.starts_with("0"))
    GTEST_SKIP() << "needs root: kernel.yama.ptrace_scope=" << scope.substr(0, 1)
                 << " lets prewarm dump trace only its own children";
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/prewarm-test.XXXXXX";
  if (!mkdtemp(tmpl)) fail("mkdtemp");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace prewarm::test
