// Requests about apps: register, unregister, list, stats, invalidate. Each user sees and changes
// only their own apps (root: all); another user's app answers exactly like a missing one.
#include <algorithm>

#include "prewarmd/daemon.h"
#include "policy/attrs.h"
#include "prewarmd/log.h"

namespace prewarm {
namespace {

using proto::error_reply;
using proto::json;

}  // namespace

void Daemon::set_status(const std::string& app, const policy::AppEvent& e) {
  auto it = registry_.apps.find(app);
  if (it != registry_.apps.end()) it->second.status = policy::transition(it->second.status, e);
}

json Daemon::op_register(const json& req, const proto::PeerCred& cred) {
  AppConfig c;
  c.name = req.at("name").get<std::string>();
  c.argv = req.at("argv").get<std::vector<std::string>>();
  c.cwd = req.at("cwd").get<std::string>();
  c.watch = req.value("watch", std::vector<std::string>{});
  c.uid = cred.uid;
  c.gid = cred.gid;
  auto mode = policy::parse_ready_mode(req.value("ready", "idle"));
  if (!valid_app_name(c.name))
    return error_reply("invalid app name '" + c.name + "': use letters, digits, '-', '_' and '.' (at most 64)", "usage");
  if (!mode) return error_reply("invalid --ready mode (use notify, idle[:MS] or delay:MS)", "usage");
  if (c.argv.empty() || c.argv[0].empty() || c.argv[0][0] != '/')
    return error_reply("the command must start with an absolute path", "usage");
  if (c.cwd.empty() || c.cwd[0] != '/') return error_reply("the working directory must be absolute", "usage");
  for (const auto& w : c.watch)
    if (w.empty() || w[0] != '/') return error_reply("--watch paths must be absolute: " + w, "usage");
  c.ready = *mode;
  if (const std::string sig = req.value("on_restore", ""); !sig.empty())
    if ((c.on_restore = policy::signal_number(sig)) == 0)
      return error_reply("--on-restore " + sig + " is not a signal an app can catch (e.g. SIGUSR1)", "usage");
  auto it = registry_.apps.find(c.name);
  if (it != registry_.apps.end() && it->second.config.uid != cred.uid)
    return error_reply("the name '" + c.name + "' is taken by another user; choose another", "exists");
  const bool replaced = it != registry_.apps.end();
  const unsigned of_user = registry_.apps_of(cred.uid);
  if (std::string why = policy::check_registration(opts_.limits, of_user, replaced, c.argv, c.cwd, c.watch); !why.empty())
    return error_reply(why, !replaced && of_user >= opts_.limits.apps_per_user ? "limit" : "usage");
  if (auto w = write_app_copy(apps_dir_.get(), c); !w)
    return error_reply("cannot record the registration: " + w.error().describe());
  if (replaced) {
    end_launches_of(c.name);
    drop_images(c.name, {policy::AppEvent::kRegistered});
  }
  App& app = registry_.apps[c.name];
  app.config = c;
  app.generation = App::next_generation();
  app.status = policy::transition(app.status, {policy::AppEvent::kRegistered});
  save();
  rebuild_watches();
  update_status();
  log_event(LOG_INFO, std::string(replaced ? "re-registered " : "registered ") + c.name,
            {{"PREWARM_APP", c.name}, {"PREWARM_UID", std::to_string(c.uid)}});
  return {{"ok", true}, {"app", to_json(c)}, {"replaced", replaced}};
}

json Daemon::op_unregister(const json& req, const proto::PeerCred& cred) {
  json err;
  const std::string name = req.at("name").get<std::string>();
  App* app = visible_app(name, cred, err);
  if (!app) return err;
  // Its launches go on as plain processes; prewarmd stops following them (and never captures).
  end_launches_of(name);
  drop_images(name, {policy::AppEvent::kInvalidated, "unregistered"});
  remove_app_copy(apps_dir_.get(), app->config.uid, name);
  registry_.apps.erase(name);
  if (history_) note_history(history_->forget(name));
  save();
  rebuild_watches();
  update_status();
  log_event(LOG_INFO, "unregistered " + name, {{"PREWARM_APP", name}});
  return {{"ok", true}};
}

// Like stats: each app's entry is serialized once per change of what it shows (list_text_), so a
// list of every app costs about a concatenation per app on the loop.
Daemon::Reply Daemon::op_list_reply(const proto::PeerCred& cred) {
  std::string text = R"({"ok":true,"apps":[)";
  bool any = false;
  for (const auto& [name, app] : registry_.apps) {
    if (cred.uid != 0 && cred.uid != app.config.uid) continue;
    uint64_t bytes = 0;
    const auto entries = store_.entries_of(name);
    for (const auto* e : entries) bytes += e->bytes;
    auto totals = history_ ? history_->totals()->get(name) : nullptr;
    std::string state = captures_.count(name) ? std::string("capturing") : std::string(policy::to_string(app.status.state));
    TextCache::Stamp stamp{totals, state, app.status.reason, bytes, true, entries.size(), app.generation};
    const auto& app_ref = app;  // a structured binding, which clang's lambdas cannot capture
    const std::string& part = list_text_.get(name, std::move(stamp), [&] {
      return proto::json_text(json{{"name", app_ref.config.name},
                                   {"uid", app_ref.config.uid},
                                   {"state", state},
                                   {"reason", app_ref.status.reason},
                                   {"images", entries.size()},
                                   {"image_bytes", bytes},
                                   {"ready", policy::to_string(app_ref.config.ready)},
                                   {"argv", app_ref.config.argv},
                                   {"cold", totals ? totals->cold.launches : 0},
                                   {"restored", totals ? totals->restored.launches : 0}});
    });
    if (any) text += ',';
    any = true;
    text += part;
  }
  if (cred.uid == 0 || list_text_.size() > 2 * registry_.apps.size() + 64) list_text_.sweep();
  unsigned in_flight = 0;
  for (const auto& [id, l] : launches_) in_flight += cred.uid == 0 || l->uid == cred.uid;
  text += "],\"launches_in_flight\":" + std::to_string(in_flight) +
          ",\"store_bytes\":" + std::to_string(store_.total_bytes()) +
          ",\"store_budget\":" + std::to_string(opts_.limits.store_budget) + "}";
  Reply r;
  r.text = proto::JsonText{std::move(text)};
  return r;
}

// Totals come from memory, and each app's part of the reply is serialized once per change of what
// it shows (stats_text_), so the reply costs about a concatenation per app. The only history rows
// read here, on the loop, are pages: "recent" (oldest first, per app) and "history" (one app,
// newest first, from a cursor), together at most kRowsPerRequest rows: a fixed few milliseconds.
Daemon::Reply Daemon::op_stats_reply(const json& req, const proto::PeerCred& cred) {
  constexpr size_t kRowsPerRequest = 1000;
  const std::string only = req.value("name", "");
  const size_t recent = static_cast<size_t>(std::clamp<int64_t>(req.value("recent", int64_t{0}), 0, History::kMaxPage));
  json history_page;
  if (req.contains("history")) {
    if (only.empty()) return {error_reply("--history needs an app NAME", "usage")};
    const json& h = req["history"];
    const int64_t before = h.value("before", int64_t{0});
    const size_t limit = static_cast<size_t>(std::clamp<int64_t>(h.value("limit", int64_t{50}), 1, History::kMaxPage));
    json page = json::array();
    json next = nullptr;
    if (history_ && registry_.apps.count(only) && (cred.uid == 0 || registry_.apps.at(only).config.uid == cred.uid)) {
      auto rows = history_->launch_page(only, before, limit);
      note_history(rows);
      if (rows) {
        for (const auto& r : *rows) page.push_back(to_json(r));
        if (rows->size() == limit) next = rows->back().id;
      }
    }
    history_page = {{"launches", page}, {"next_before", next}};
  }
  size_t rows_left = kRowsPerRequest;
  bool truncated = false, any = false;
  std::string text = R"({"ok":true,"apps":[)";
  for (const auto& [name, app] : registry_.apps) {
    if (cred.uid != 0 && cred.uid != app.config.uid) continue;
    if (!only.empty() && name != only) continue;
    uint64_t bytes = 0;
    for (const auto* e : store_.entries_of(name)) bytes += e->bytes;
    auto totals = history_ ? history_->totals()->get(name) : nullptr;
    TextCache::Stamp stamp{totals, std::string(policy::to_string(app.status.state)), app.status.reason, bytes, true};
    const auto& app_ref = app;  // a structured binding, which clang's lambdas cannot capture
    const std::string& part = stats_text_.get(name, std::move(stamp), [&] {
      return proto::json_text(app_stats(app_ref, bytes, totals ? *totals : AppTotals{}));
    });
    if (any) text += ',';
    any = true;
    if (!history_ || recent == 0) {
      text += part;
      continue;
    }
    json rows_json = json::array();
    const size_t take = std::min(recent, rows_left);
    truncated |= take < recent;
    if (take > 0) {
      auto rows = history_->launch_page(name, 0, take);
      note_history(rows);
      if (rows) {
        rows_left -= rows->size();
        for (auto it = rows->rbegin(); it != rows->rend(); ++it) rows_json.push_back(to_json(*it));
      }
    }
    // The cached object with one more member: its closing brace moved past "recent".
    text.append(part, 0, part.size() - 1);
    text += R"(,"recent":)" + proto::json_text(rows_json) + "}";
  }
  if (!only.empty() && !any) return {error_reply("no app named '" + only + "' is registered", "not_found")};
  // After a full pass, entries of apps that are gone (or not this user's) go.
  if (only.empty() && (cred.uid == 0 || stats_text_.size() > 2 * registry_.apps.size() + 64)) stats_text_.sweep();
  text += "]";
  if (truncated) text += R"(,"recent_truncated":true)";
  if (!history_page.is_null()) text += R"(,"history":)" + proto::json_text(history_page);
  text += "}";
  Reply r;
  r.text = proto::JsonText{std::move(text)};
  return r;
}

json Daemon::op_invalidate(const json& req, const proto::PeerCred& cred) {
  std::vector<std::string> names;
  if (req.value("all", false)) {
    for (const auto& [name, app] : registry_.apps)
      if (cred.uid == 0 || cred.uid == app.config.uid) names.push_back(name);
  } else {
    json err;
    const std::string name = req.at("name").get<std::string>();
    if (!visible_app(name, cred, err)) return err;
    names.push_back(name);
  }
  for (const auto& n : names) {
    drop_images(n, {policy::AppEvent::kInvalidated, "invalidated by uid " + std::to_string(cred.uid)});
    log_event(LOG_INFO, "invalidated " + n, {{"PREWARM_APP", n}});
  }
  save();
  rebuild_watches();
  update_status();
  return {{"ok", true}, {"invalidated", names}};
}

}  // namespace prewarm
