// Requests about apps: register, unregister, list, stats, invalidate. Each user sees and changes
// only their own apps (root: all); another user's app answers exactly like a missing one.
#include <fcntl.h>

#include <algorithm>

#include "prewarmd/daemon.h"
#include "policy/attrs.h"
#include "prewarmd/log.h"
#include "snapshot/clock.h"

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

Daemon::Reply Daemon::op_query(const json& req, Connection& c) {
  unsigned& waiting = queries_by_uid_[c.cred.uid];
  if (!policy::query_allowed(opts_.limits, c.cred.uid, waiting)) {
    if (waiting == 0) queries_by_uid_.erase(c.cred.uid);
    return {error_reply("busy: " + std::to_string(waiting) +
                            " list or stats requests of this user are waiting for their answers; try again when they are",
                        "busy")};
  }
  const int64_t wait_ns = pacer_.take(c.cred.uid, mono_ns());
  sd_event_source* turn = nullptr;
  Reply r;
  if (wait_ns == 0 || sd_event_add_time_relative(event_, &turn, CLOCK_MONOTONIC, static_cast<uint64_t>(wait_ns / 1000),
                                                 1000, on_query_turn, this) < 0) {
    r = start_query(req, c);
  } else {
    waiting_queries_[turn] = {c.id, req};
    r.deferred = true;
  }
  if (r.deferred) ++waiting, c.query = true;  // until the connection closes
  else if (waiting == 0) queries_by_uid_.erase(c.cred.uid);
  return r;
}

int Daemon::on_query_turn(sd_event_source* s, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  auto node = self->waiting_queries_.extract(s);
  sd_event_source_disable_unref(s);
  if (node.empty()) return 0;
  auto it = self->connections_.find(node.mapped().conn);
  if (it == self->connections_.end()) return 0;
  Reply r = self->start_query(node.mapped().req, *it->second);
  if (r.text) self->send_reply(node.mapped().conn, std::move(*r.text));
  return 0;
}

// The loop's part of a query is a fresh view (O(apps), shared with the dashboard) and the few facts
// only it knows; the answer, and any history rows it pages through, are the query thread's.
Daemon::Reply Daemon::start_query(const json& req, Connection& c) {
  publish();
  QueryJob job{c.id, UniqueFd(::fcntl(c.fd.get(), F_DUPFD_CLOEXEC, 0)), c.cred.uid, 0, req, view_, {}, 0};
  for (const auto& [name, capture] : captures_) job.capturing.insert(name);
  for (const auto& [id, l] : launches_) job.launches_in_flight += c.cred.uid == 0 || l->uid == c.cred.uid;
  Reply r;
  if (!queries_source_) {  // no thread (it could not start): answered here
    r.text = proto::JsonText{queries_->answer(job)};
    return r;
  }
  queries_->submit(std::move(job));
  hurry_soon(IdleThread::kLateNs);
  r.deferred = true;
  return r;
}

int Daemon::on_query_done(sd_event_source*, int, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  self->deliver_answers(self->queries_->take());
  return 0;
}

void Daemon::deliver_answers(std::vector<QueryAnswer> answers) {
  for (auto& a : answers) {
    auto it = connections_.find(a.conn);
    if (it == connections_.end()) continue;
    if (!a.error.empty()) close_connection(a.conn, "the peer went away before its reply");
    else if (a.sent) close_connection(a.conn);
    else start_writing(*it->second, std::move(a.rest));
  }
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
