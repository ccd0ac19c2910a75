#include "prewarmd/capture.h"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "prewarmd/dump_flow.h"
#include "prewarmd/file_records.h"
#include "prewarmd/protocol.h"
#include "prewarmd/registry.h"
#include "snapshot/image.h"

namespace prewarm {
namespace {

using nlohmann::json;

std::string result_path(const std::string& incoming) { return incoming + ".result.json"; }

json to_json(const CaptureResult& r) {
  json files = json::array();
  for (const auto& f : r.files)
    files.push_back({{"path", f.path}, {"dev", f.dev}, {"ino", f.ino}, {"size", f.size},
                     {"mtime_ns", f.mtime_ns}, {"ctime_ns", f.ctime_ns}, {"hash", f.content_hash}});
  return {{"status", r.status}, {"message", r.message}, {"key", r.key}, {"files", files}, {"freeze_ms", r.freeze_ms}};
}

CaptureResult capture(pid_t pid, const std::string& incoming, const policy::LaunchContext& ctx,
                      const std::vector<std::string>& argv, const std::string& cwd,
                      const std::vector<std::string>& watch) {
  CaptureResult r;
  // 1. The image, complete or not at all; the app keeps running.
  DumpOutcome d = dump_process(pid, incoming, /*kill=*/false);
  r.freeze_ms = d.freeze_ms;
  if (d.status == DumpOutcome::kUnsupported) {
    r.status = "unsupported";
    for (const auto& o : d.offenders) r.message += (r.message.empty() ? "" : "; ") + o;
    return r;
  }
  if (d.status == DumpOutcome::kFailed) {
    r.message = d.message;
    return r;
  }
  // 2. What the snapshot depends on: recorded now, so a change after this point invalidates it.
  auto img = load_image(incoming);
  if (!img) {
    r.message = "the new image does not load: " + img.error().describe();
    return r;
  }
  for (const auto& path : dependency_paths(img->snap, argv, cwd, watch)) {
    // Records travel as JSON: such a name would arrive altered and the snapshot be stale at
    // once, so every launch would start cold and capture again.
    if (!proto::is_utf8(path)) {
      r.status = "unsupported";
      r.message = "the app uses a file whose name is not UTF-8 (" + path + ")";
      return r;
    }
    auto rec = record_file(path);
    if (!rec) {
      r.message = "cannot record " + path + ": " + rec.error().describe();
      return r;
    }
    r.files.push_back(std::move(*rec));
  }
  // 3. A file that changed between the dump and its hashing would poison the key.
  if (std::string change = first_change(r.files); !change.empty()) {
    r.message = change + " during the capture";
    return r;
  }
  r.key = policy::snapshot_key(ctx, r.files);
  r.status = "ok";
  return r;
}

}  // namespace

int run_capture_child(pid_t pid, unsigned delay_ms, const std::string& incoming, const policy::LaunchContext& ctx,
                      const std::vector<std::string>& argv, const std::string& cwd,
                      const std::vector<std::string>& watch) {
  // After READY=1 the app may still be closing the socket it sent it with.
  if (delay_ms) ::usleep(delay_ms * 1000);
  CaptureResult r = capture(pid, incoming, ctx, argv, cwd, watch);
  if (!write_file_atomic(result_path(incoming), proto::json_text(to_json(r)), 0600)) return 1;
  return r.status == "ok" ? 0 : (r.status == "unsupported" ? 3 : 1);
}

CaptureResult read_capture_result(const std::string& incoming) {
  CaptureResult r;
  auto text = read_file(result_path(incoming));
  ::unlink(result_path(incoming).c_str());
  if (!text) {
    r.message = "the capture ended without a result (it crashed or was killed)";
    return r;
  }
  json j = json::parse(*text, nullptr, false);
  try {
    r.status = j.at("status").get<std::string>();
    r.message = j.value("message", "");
    r.key = j.value("key", "");
    r.freeze_ms = j.value("freeze_ms", 0.0);
    for (const auto& f : j.at("files"))
      r.files.push_back({f.at("path").get<std::string>(), f.at("dev").get<uint64_t>(), f.at("ino").get<uint64_t>(),
                         f.at("size").get<uint64_t>(), f.at("mtime_ns").get<int64_t>(), f.at("ctime_ns").get<int64_t>(),
                         f.at("hash").get<std::string>()});
  } catch (const json::exception& e) {
    r = CaptureResult{};
    r.message = std::string("garbled capture result: ") + e.what();
  }
  if (r.status == "ok" && r.key.size() != 32) r.status = "failed", r.message = "capture result without a key";
  return r;
}

}  // namespace prewarm
