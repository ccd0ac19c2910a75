#include "prewarmd/registry.h"

#include <atomic>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pwd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "prewarmd/protocol.h"
#include "snapshot/dir_entries.h"
#include "snapshot/unique_fd.h"

namespace prewarm {
namespace {

using nlohmann::json;
constexpr int kRegistryVersion = 1;

std::string dirname_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? "." : (s == 0 ? "/" : p.substr(0, s));
}

}  // namespace

uint64_t App::next_generation() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

bool valid_app_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

// The stored form (registry.json, and each user's copy): the members under their own names, the
// ready mode as its text (policy::to_string).
namespace {
struct BadConfig : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace
namespace policy {
static void to_json(json& j, const ReadyMode& m) { j = to_string(m); }
static void from_json(const json& j, ReadyMode& m) {
  auto mode = parse_ready_mode(j.get<std::string>());
  if (!mode) throw BadConfig("an invalid ready mode " + j.dump());
  m = *mode;
}
}  // namespace policy
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(AppConfig, name, uid, gid, argv, cwd, ready, watch, on_restore)

json to_json(const AppConfig& c) { return c; }

Result<void> write_file_atomic(const std::string& path, const std::string& text, mode_t mode) {
  // A fresh file (a stale temp file is replaced, never reused with its old mode), removed again
  // if anything fails before the rename.
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  {
    PW_ASSIGN(auto fd, open_fd(tmp, O_WRONLY | O_CREAT | O_EXCL, mode));
    Result<void> w = write_all(fd.get(), text.data(), text.size());
    if (w && ::fchmod(fd.get(), mode) != 0) w = errno_error("chmod " + tmp);
    if (w && ::fsync(fd.get()) != 0) w = errno_error("fsync " + tmp);
    if (!w) {
      ::unlink(tmp.c_str());
      return w.error();
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return make_error(e, "rename " + tmp + " to " + path);
  }
  PW_ASSIGN(auto dir, open_fd(dirname_of(path), O_RDONLY | O_DIRECTORY));
  ::fsync(dir.get());
  return ok();
}

Result<AppConfig> app_config_from_json(const json& c, const std::string& name) {
  AppConfig cfg;
  try {
    json k = c;
    if (k.is_object()) {
      k["name"] = name;  // the registry's key, or the copy's file name, says which app it is
      // Keys added after registry version 1 was first written.
      k.emplace("watch", json::array());
      k.emplace("on_restore", 0);
    }
    k.get_to(cfg);
  } catch (const json::exception& e) {
    return data_error("app " + name + ": " + e.what());
  } catch (const BadConfig& e) {
    return data_error("app " + name + ": " + e.what());
  }
  if (cfg.on_restore < 0 || cfg.on_restore > 64) return data_error("app " + name + " has an invalid on_restore signal");
  if (!valid_app_name(name) || cfg.argv.empty() || cfg.argv[0].empty() || cfg.argv[0][0] != '/' || cfg.cwd.empty() ||
      cfg.cwd[0] != '/')
    return data_error("app " + name + " has an invalid configuration");
  return cfg;
}

Result<void> Registry::load(const std::string& path) {
  auto text = read_file(path);
  if (!text) {
    if (text.error().code == ENOENT) return ok();
    return text.error();
  }
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_error(path + " is not valid JSON");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"] != kRegistryVersion)
    return data_error(path + " has an unknown version (this prewarmd reads version " +
                      std::to_string(kRegistryVersion) + ")");
  if (!j.contains("apps") || !j["apps"].is_object()) return data_error(path + ": \"apps\" is not an object");
  // One bad entry costs that app, never the others.
  for (const auto& [name, a] : j.at("apps").items()) {
    if (!a.is_object() || !a.contains("config")) {
      skipped.push_back(path + ": app " + name + " has no configuration; dropped");
      continue;
    }
    auto cfg = app_config_from_json(a["config"], name);
    if (!cfg) {
      skipped.push_back(path + ": " + cfg.error().describe() + "; dropped");
      continue;
    }
    App app;
    app.config = std::move(*cfg);
    if (a.contains("status") && a["status"].is_object()) {
      const auto& s = a["status"];
      auto st = policy::parse_app_state(s.value("state", "none"));
      app.status.state = st.value_or(policy::AppState::kNone);
      app.status.reason = s.value("reason", "");
    }
    apps.emplace(name, std::move(app));
  }
  return ok();
}

Result<void> Registry::save(const std::string& path) const {
  std::erase_if(config_text_, [&](const auto& e) { return !apps.count(e.first); });
  // One app per line; only the statuses are serialized anew.
  std::string text = "{\"apps\": {";
  const char* sep = "\n ";
  for (const auto& [name, a] : apps) {
    auto& [generation, config] = config_text_[name];
    if (config.empty() || generation != a.generation) generation = a.generation, config = proto::json_text(to_json(a.config));
    const json status = {{"state", policy::to_string(a.status.state)}, {"reason", a.status.reason}};
    text += sep + proto::json_text(name) + ": {\"config\": " + config + ", \"status\": " + proto::json_text(status) + "}";
    sep = ",\n ";
  }
  text += "\n}, \"version\": " + std::to_string(kRegistryVersion) + "}\n";
  return write_file_atomic(path, text, 0600);
}

unsigned Registry::apps_of(uid_t uid) const {
  unsigned n = 0;
  for (const auto& [name, a] : apps) n += a.config.uid == uid;
  return n;
}

std::string app_copy_name(uid_t uid, const std::string& name) { return std::to_string(uid) + "/" + name + ".json"; }

namespace {

// STATE/apps/UID: the user's (0500), so only that user can look up names in it. prewarmd writes
// it as root anyway; should its owner make it writable, nothing in it is ever followed (openat
// O_NOFOLLOW|O_EXCL, renameat) and every file is believed only if that user owns it.
Result<UniqueFd> user_dir(int apps_dir, uid_t uid, gid_t gid, bool create) {
  const std::string n = std::to_string(uid);
  if (create && ::mkdirat(apps_dir, n.c_str(), 0500) != 0 && errno != EEXIST) return errno_error("create apps/" + n);
  int raw = ::openat(apps_dir, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (raw < 0) return errno_error("open apps/" + n);
  UniqueFd d(raw);
  struct stat st {};
  if (::fstat(d.get(), &st) != 0) return errno_error("stat apps/" + n);
  if (create && (st.st_uid != uid || (st.st_mode & 07777) != 0500)) {
    if (st.st_uid != uid && st.st_uid != ::geteuid()) return data_error("apps/" + n + " belongs to another user");
    if (::fchown(d.get(), uid, gid) != 0 || ::fchmod(d.get(), 0500) != 0) return errno_error("hand apps/" + n + " to its user");
  }
  if (!create && st.st_uid != uid) return data_error("apps/" + n + " is not owned by uid " + n);
  return d;
}

// The file is a regular file of exactly this content, owner, group and mode 0400.
bool copy_is(int dir, const std::string& name, const std::string& text, const AppConfig& c) {
  int raw = ::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (raw < 0) return false;
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != c.uid || st.st_gid != c.gid ||
      (st.st_mode & 07777) != 0400 || static_cast<size_t>(st.st_size) != text.size())
    return false;
  std::string now(text.size(), '\0');
  ssize_t n = ::pread(fd.get(), now.data(), now.size(), 0);
  return n == static_cast<ssize_t>(now.size()) && now == text;
}

}  // namespace

Result<void> write_app_copy(int apps_dir, const AppConfig& c) {
  PW_ASSIGN(UniqueFd dir, user_dir(apps_dir, c.uid, c.gid, /*create=*/true));
  const std::string final_name = c.name + ".json";
  const std::string tmp = "." + final_name + ".tmp";
  ::unlinkat(dir.get(), tmp.c_str(), 0);
  const std::string text = proto::json_text(to_json(c), 1);
  // A copy already as it should be is left alone: prewarmd's start-up writes every app's copy,
  // and a fsync and rename each made a start with 1,000 apps take seconds.
  if (copy_is(dir.get(), final_name, text, c)) return ok();
  {
    int raw = ::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
    if (raw < 0) return errno_error("create " + tmp);
    UniqueFd fd(raw);
    Result<void> w = write_all(fd.get(), text.data(), text.size());
    if (w && ::fchown(fd.get(), c.uid, c.gid) != 0) w = errno_error("hand " + final_name + " to its user");
    if (w && ::fchmod(fd.get(), 0400) != 0) w = errno_error("chmod " + final_name);
    if (w && ::fsync(fd.get()) != 0) w = errno_error("fsync " + final_name);
    if (!w) {
      ::unlinkat(dir.get(), tmp.c_str(), 0);
      return w.error();
    }
  }
  if (::renameat(dir.get(), tmp.c_str(), dir.get(), final_name.c_str()) != 0) {
    int e = errno;
    ::unlinkat(dir.get(), tmp.c_str(), 0);
    return make_error(e, "rename " + tmp);
  }
  return ok();
}

void remove_app_copy(int apps_dir, uid_t uid, const std::string& name) {
  auto dir = user_dir(apps_dir, uid, 0, /*create=*/false);
  if (dir) ::unlinkat(dir->get(), (name + ".json").c_str(), 0);
}

namespace {

// A copy is believed only for the user who owns the file: its owner could have edited it.
Result<AppConfig> parse_copy(int fd, const std::string& label, uid_t want_uid, const std::string& want_name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("stat " + label);
  if (!S_ISREG(st.st_mode)) return data_error(label + " is not a regular file");
  if (st.st_uid != want_uid) return data_error(label + " is not owned by uid " + std::to_string(want_uid));
  if (st.st_size > (1 << 20)) return data_error(label + " is implausibly large");
  PW_ASSIGN(std::string text, read_fd(fd));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return data_error(label + " is not valid JSON");
  PW_ASSIGN(AppConfig c, app_config_from_json(j, want_name));
  if (c.uid != want_uid) return data_error(label + " names another user");
  if (j.value("name", "") != want_name) return data_error(label + " names another app");
  // Its owner may have edited it: the group it names is not believed (a root launcher would
  // run the app with it). The user's primary group from the password database is used instead.
  const passwd* pw = ::getpwuid(want_uid);
  if (!pw) return data_error(label + ": uid " + std::to_string(want_uid) + " has no password entry to take its group from");
  c.gid = pw->pw_gid;
  return c;
}

// The names in a directory (by fd; the fd itself stays open).
std::vector<std::string> names_in(int dir) {
  std::vector<std::string> out;
  if (auto names = dir_names_at(dir))
    for (auto& n : *names)
      if (n[0] != '.') out.push_back(std::move(n));
  return out;
}

}  // namespace

std::vector<AppConfig> read_app_copies(int apps_dir, std::vector<std::string>& skipped) {
  std::vector<AppConfig> out;
  for (const auto& u : names_in(apps_dir)) {
    char* endp = nullptr;
    const unsigned long uid = std::strtoul(u.c_str(), &endp, 10);
    if (u.empty() || *endp != '\0') {
      skipped.push_back("apps/" + u + ": not a user's directory; ignored");
      continue;
    }
    auto dir = user_dir(apps_dir, static_cast<uid_t>(uid), 0, /*create=*/false);
    if (!dir) {
      skipped.push_back(dir.error().describe() + "; ignored");
      continue;
    }
    for (const auto& n : names_in(dir->get())) {
      const std::string label = "apps/" + u + "/" + n;
      if (n.size() < 6 || n.substr(n.size() - 5) != ".json") {
        skipped.push_back(label + ": not an app copy; ignored");
        continue;
      }
      int raw = ::openat(dir->get(), n.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
      if (raw < 0) {
        skipped.push_back(label + ": " + std::strerror(errno) + "; ignored");
        continue;
      }
      UniqueFd fd(raw);
      auto c = parse_copy(fd.get(), label, static_cast<uid_t>(uid), n.substr(0, n.size() - 5));
      if (!c) skipped.push_back(c.error().describe() + "; ignored");
      else out.push_back(std::move(*c));
    }
  }
  return out;
}

Result<AppConfig> read_app_copy(const std::string& state_dir, uid_t uid, const std::string& name) {
  if (!valid_app_name(name)) return data_error("invalid app name '" + name + "'");
  const std::string path = state_dir + "/apps/" + app_copy_name(uid, name);
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (raw < 0) return errno_error("open " + path);
  UniqueFd fd(raw);
  return parse_copy(fd.get(), path, uid, name);
}

}  // namespace prewarm
