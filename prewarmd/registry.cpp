#include "prewarmd/registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "prewarmd/protocol.h"
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

bool valid_app_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

json to_json(const AppConfig& c) {
  return {{"name", c.name}, {"uid", c.uid}, {"gid", c.gid}, {"argv", c.argv},
          {"cwd", c.cwd},   {"ready", policy::to_string(c.ready)}, {"watch", c.watch}};
}

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
  try {
    for (const auto& [name, a] : j.at("apps").items()) {
      App app;
      const auto& c = a.at("config");
      app.config.name = name;
      app.config.uid = c.at("uid").get<uid_t>();
      app.config.gid = c.at("gid").get<gid_t>();
      app.config.argv = c.at("argv").get<std::vector<std::string>>();
      app.config.cwd = c.at("cwd").get<std::string>();
      auto mode = policy::parse_ready_mode(c.at("ready").get<std::string>());
      if (!mode || app.config.argv.empty() || !valid_app_name(name))
        return data_error(path + ": app " + name + " has an invalid configuration");
      app.config.ready = *mode;
      app.config.watch = c.value("watch", std::vector<std::string>{});
      const auto& s = a.at("status");
      app.status.state = s.value("state", "none");
      app.status.reason = s.value("reason", "");
      apps.emplace(name, std::move(app));
    }
  } catch (const json::exception& e) {
    return data_error(path + ": " + e.what());
  }
  return ok();
}

Result<void> Registry::save(const std::string& path) const {
  json japps = json::object();
  for (const auto& [name, a] : apps) {
    japps[name] = {{"config", to_json(a.config)},
                   {"status",
                    {{"state", a.status.state},
                     {"reason", a.status.reason}}}};
  }
  json j = {{"version", kRegistryVersion}, {"apps", japps}};
  return write_file_atomic(path, proto::json_text(j, 1), 0600);
}

}  // namespace prewarm
