#include "policy/launch_key.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

namespace prewarm::policy {
namespace {

bool per_launch(std::string_view var) {
  static constexpr std::string_view kExact[] = {
      "INVOCATION_ID", "NOTIFY_SOCKET", "JOURNAL_STREAM", "SYSTEMD_EXEC_PID", "MAINPID",
      "MANAGERPID",    "WATCHDOG_PID",  "WATCHDOG_USEC",  "TRIGGER_UNIT",     "MONITOR_SERVICE_RESULT",
      "OLDPWD",        "PWD",           "_"};
  static constexpr std::string_view kPrefix[] = {"LISTEN_", "PREWARM_", "TRIGGER_", "MONITOR_"};
  std::string_view name = var.substr(0, var.find('='));
  for (auto e : kExact)
    if (name == e) return true;
  for (auto p : kPrefix)
    if (name.substr(0, p.size()) == p) return true;
  return false;
}

// Length-prefixed fields, so ("ab","c") and ("a","bc") hash differently.
class KeyHasher {
 public:
  KeyHasher() : state_(XXH3_createState()) { XXH3_128bits_reset(state_); }
  ~KeyHasher() { XXH3_freeState(state_); }
  KeyHasher(const KeyHasher&) = delete;
  KeyHasher& operator=(const KeyHasher&) = delete;
  void field(std::string_view s) {
    uint64_t n = s.size();
    XXH3_128bits_update(state_, &n, sizeof n);
    XXH3_128bits_update(state_, s.data(), s.size());
  }
  void number(uint64_t v) { XXH3_128bits_update(state_, &v, sizeof v); }
  std::string hex() {
    XXH128_hash_t h = XXH3_128bits_digest(state_);
    return hash_hex(h.high64, h.low64);
  }

 private:
  XXH3_state_t* state_;
};

}  // namespace

std::string hash_hex(uint64_t high, uint64_t low) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return buf;
}

std::vector<std::string> launch_environment(const std::vector<std::string>& env) {
  std::vector<std::string> out;
  for (const auto& e : env)
    if (e.find('=') != std::string::npos && !per_launch(e)) out.push_back(e);
  std::sort(out.begin(), out.end());
  return out;
}

std::string stdio_kind(uint32_t st_mode, bool is_tty) {
  if (st_mode == 0) return "closed";
  if (is_tty) return "tty";
  if (S_ISFIFO(st_mode)) return "pipe";
  if (S_ISSOCK(st_mode)) return "socket";
  if (S_ISREG(st_mode)) return "file";
  if (S_ISDIR(st_mode)) return "dir";
  return "chardev";
}

std::string snapshot_key(const LaunchContext& ctx, std::vector<FileRecord> files) {
  KeyHasher h;
  h.field("prewarm-key-v1");
  h.field(ctx.app);
  h.number(ctx.argv.size());
  for (const auto& a : ctx.argv) h.field(a);
  const auto env = launch_environment(ctx.env);
  h.number(env.size());
  for (const auto& e : env) h.field(e);
  h.field(ctx.cwd);
  h.number(ctx.uid);
  h.number(ctx.gid);
  for (const auto& s : ctx.stdio) h.field(s);
  h.field(ctx.kernel);
  h.number(ctx.xfeatures);
  h.number(ctx.xsave_size);
  h.field(ctx.security);
  std::sort(files.begin(), files.end(), [](auto& a, auto& b) { return a.path < b.path; });
  h.number(files.size());
  for (const auto& f : files) {
    h.field(f.path);
    h.field(f.content_hash);
  }
  return h.hex();
}

}  // namespace prewarm::policy
