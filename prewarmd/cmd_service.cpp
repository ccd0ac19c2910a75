// `prewarm register/unregister/list/snapshot/invalidate/stats`: requests to prewarmd, printed
// for people or (--json) for scripts.
#include "prewarmd/cmd_service.h"

#include <limits.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "prewarmd/cmd_dump.h"
#include "prewarmd/protocol.h"

namespace prewarm::cli {
namespace {

using proto::json;

// Sends the request; on failure prints why and what to do, and returns the exit code to use.
int call(const json& request, json& reply, int timeout_ms = 30'000) {
  const std::string dir = proto::runtime_dir();
  auto r = proto::call(dir, request, {}, timeout_ms);
  if (!r) {
    std::fprintf(stderr,
                 "prewarm: cannot reach prewarmd at %s: %s\n"
                 "Start it with `systemctl start prewarmd.socket` (or run `prewarmd` in the foreground).\n",
                 proto::control_socket_path(dir).c_str(), r.error().describe().c_str());
    return kExitNoDaemon;
  }
  reply = std::move(r->msg);
  if (reply.value("ok", false)) return kExitOk;
  const std::string code = reply.value("code", "error");
  std::fprintf(stderr, "prewarm: %s\n", reply.value("error", "request failed").c_str());
  if (code == "not_found") return kExitNotFound;
  if (code == "usage") return kExitUsage;
  if (code == "unsupported") return kExitUnsupported;
  if (code == "not_running") return kExitNotRunning;
  if (code == "other_owner") return kExitNotFound;
  return kExitError;
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1u << 20)) std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  else std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(b) / 1024);
  return buf;
}

std::string ms_text(const json& v) {
  if (v.is_null()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", v.get<double>());
  return buf;
}

// argv[0] as the kernel will find it: absolute, resolved against PATH like a shell would.
std::string resolve_command(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) {
    if (cmd[0] == '/') return cmd;
    char cwd[PATH_MAX];
    return ::getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" + cmd : cmd;
  }
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string cand = p.substr(start, end - start) + "/" + cmd;
    if (cand[0] == '/' && ::access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return cmd;
}

}  // namespace

int run_register(const RegisterArgs& a, bool as_json) {
  char cwd[PATH_MAX];
  if (!::getcwd(cwd, sizeof cwd)) {
    std::perror("prewarm register: getcwd");
    return kExitError;
  }
  std::vector<std::string> argv = a.command;
  argv[0] = resolve_command(argv[0]);
  if (argv[0][0] != '/' || ::access(argv[0].c_str(), X_OK) != 0) {
    std::fprintf(stderr, "prewarm register: %s is not an executable (give a path or a command on PATH)\n",
                 a.command[0].c_str());
    return kExitUsage;
  }
  std::vector<std::string> watch;
  for (const auto& w : a.watch) watch.push_back(w[0] == '/' ? w : std::string(cwd) + "/" + w);
  // The control protocol is JSON: bytes that are not UTF-8 would arrive altered.
  std::vector<std::string> texts = argv;
  texts.insert(texts.end(), {a.name, cwd});
  texts.insert(texts.end(), watch.begin(), watch.end());
  for (const auto& t : texts)
    if (!proto::is_utf8(t)) {
      std::fprintf(stderr, "prewarm register: '%s' is not valid UTF-8; prewarm can only register commands, "
                           "paths and a working directory in UTF-8 (rename the file or use a symlink)\n", t.c_str());
      return kExitUsage;
    }
  json reply;
  json req = {{"op", "register"}, {"name", a.name}, {"argv", argv}, {"cwd", cwd}, {"ready", a.ready}, {"watch", watch}};
  if (!a.on_restore.empty()) req["on_restore"] = a.on_restore;
  int rc = call(req, reply);
  if (rc != kExitOk) return rc;
  if (as_json) {
    std::printf("%s\n", proto::json_text(reply, 2).c_str());
  } else {
    std::string cmd;
    for (const auto& s : argv) cmd += (cmd.empty() ? "" : " ") + s;
    std::printf("%s %s: %s (ready: %s). Launch it with `prewarm run %s` or `systemctl start prewarm@%s`.\n",
                reply.value("replaced", false) ? "re-registered" : "registered", a.name.c_str(), cmd.c_str(),
                a.ready.c_str(), a.name.c_str(), a.name.c_str());
  }
  return kExitOk;
}

int run_unregister(const std::string& name, bool as_json) {
  json reply;
  int rc = call({{"op", "unregister"}, {"name", name}}, reply);
  if (rc == kExitOk) std::printf(as_json ? "%s\n" : "unregistered %s; its images are deleted\n", as_json ? proto::json_text(reply).c_str() : name.c_str());
  return rc;
}

int run_list(bool as_json) {
  json reply;
  int rc = call({{"op", "list"}}, reply);
  if (rc != kExitOk) return rc;
  if (as_json) {
    std::printf("%s\n", proto::json_text(reply, 2).c_str());
    return kExitOk;
  }
  std::printf("%-16s %-12s %6s %10s %-12s %7s %8s  %s\n", "NAME", "STATE", "IMAGES", "SIZE", "READY", "COLD", "RESTORED", "REASON");
  for (const auto& a : reply["apps"])
    std::printf("%-16s %-12s %6zu %10s %-12s %7llu %8llu  %s\n", a["name"].get<std::string>().c_str(),
                a["state"].get<std::string>().c_str(), a["images"].get<size_t>(),
                human_bytes(a["image_bytes"].get<uint64_t>()).c_str(), a["ready"].get<std::string>().c_str(),
                a["cold"].get<unsigned long long>(), a["restored"].get<unsigned long long>(),
                a["reason"].get<std::string>().c_str());
  return kExitOk;
}

int run_snapshot(const std::string& name, bool as_json) {
  json reply;
  // A capture of a large app takes seconds; prewarmd answers when it is done.
  int rc = call({{"op", "snapshot"}, {"name", name}}, reply, 600'000);
  if (rc != kExitOk) return rc;
  if (as_json) std::printf("%s\n", proto::json_text(reply, 2).c_str());
  else
    std::printf("captured %s: %s in %.1f ms (app frozen %.1f ms), key %s\n", name.c_str(),
                human_bytes(reply["image_bytes"].get<uint64_t>()).c_str(), reply["capture_ms"].get<double>(),
                reply["freeze_ms"].get<double>(), reply["key"].get<std::string>().c_str());
  return kExitOk;
}

int run_invalidate(const std::string& name, bool all, bool as_json) {
  json reply;
  json req = {{"op", "invalidate"}};
  if (all) req["all"] = true;
  else req["name"] = name;
  int rc = call(req, reply);
  if (rc != kExitOk) return rc;
  if (as_json) std::printf("%s\n", proto::json_text(reply).c_str());
  else
    for (const auto& n : reply["invalidated"])
      std::printf("invalidated %s: its next launch is cold and captures a new snapshot\n", n.get<std::string>().c_str());
  return kExitOk;
}

int run_stats(const std::string& name, bool as_json, unsigned recent, unsigned history_limit, int64_t before) {
  json reply;
  json req = {{"op", "stats"}, {"recent", as_json && !history_limit ? recent : 0u}};
  if (!name.empty()) req["name"] = name;
  if (history_limit) req["history"] = {{"limit", history_limit}, {"before", before}};
  int rc = call(req, reply);
  if (rc != kExitOk) return rc;
  if (history_limit && !as_json) {
    std::printf("%-10s %-24s %-9s %11s  %s\n", "ID", "TIME", "MODE", "READY", "FALLBACK");
    for (const auto& l : reply["history"]["launches"]) {
      const time_t t = static_cast<time_t>(l["time_ms"].get<int64_t>() / 1000);
      char when[32] = "";
      std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
      std::printf("%-10lld %-24s %-9s %11s  %s\n", static_cast<long long>(l["id"].get<int64_t>()), when,
                  l["mode"].get<std::string>().c_str(), ms_text(l["ready_ms"]).c_str(),
                  l["fallback"].is_string() ? l["fallback"].get<std::string>().c_str() : "");
    }
    if (!reply["history"]["next_before"].is_null())
      std::printf("older: prewarm stats %s --history --before %lld\n", name.c_str(),
                  static_cast<long long>(reply["history"]["next_before"].get<int64_t>()));
    return kExitOk;
  }
  if (as_json) {
    std::printf("%s\n", proto::json_text(reply, 2).c_str());
    return kExitOk;
  }
  std::printf("%-16s %6s %8s %9s %6s %11s %11s %15s %15s %8s %9s %10s\n", "NAME", "COLD", "RESTORED", "FALLBACKS",
              "FAILED", "COLD p50", "COLD p95", "RESTORED p50", "RESTORED p95", "SPEEDUP", "HIT RATE", "IMAGE");
  for (const auto& a : reply["apps"]) {
    const auto& l = a["launches"];
    char speed[16] = "-", hit[16] = "-";
    if (!a["speedup"].is_null()) std::snprintf(speed, sizeof speed, "%.1fx", a["speedup"].get<double>());
    if (!a["hit_rate"].is_null()) std::snprintf(hit, sizeof hit, "%.0f%%", 100 * a["hit_rate"].get<double>());
    std::printf("%-16s %6llu %8llu %9llu %6llu %11s %11s %15s %15s %8s %9s %10s\n", a["name"].get<std::string>().c_str(),
                l["cold"].get<unsigned long long>(), l["restored"].get<unsigned long long>(),
                l["fallbacks"].get<unsigned long long>(), l.value("failed", 0ull), ms_text(a["cold_ready_ms"]["p50"]).c_str(),
                ms_text(a["cold_ready_ms"]["p95"]).c_str(), ms_text(a["restored_ready_ms"]["p50"]).c_str(),
                ms_text(a["restored_ready_ms"]["p95"]).c_str(), speed, hit,
                human_bytes(a["image_bytes"].get<uint64_t>()).c_str());
    for (const auto& f : a["last_fallbacks"]) std::printf("    fallback: %s\n", f.get<std::string>().c_str());
  }
  return kExitOk;
}

}  // namespace prewarm::cli
