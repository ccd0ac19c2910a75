// Control connections: at most a few per user at once, each read and answered without blocking
// the loop and within a deadline from accept, so no peer can hold up another user's request.
#include <sys/socket.h>
#include <unistd.h>

#include "prewarmd/daemon.h"
#include "prewarmd/log.h"

namespace prewarm {
namespace {

using proto::error_reply;
using proto::json;

}  // namespace

int Daemon::on_accept(sd_event_source*, int fd, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  // A burst of clients: take them all now, each costs only a few syscalls here.
  for (int i = 0; i < 64; ++i) {
    UniqueFd conn(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn.valid()) {
      // Out of descriptors: the socket stays readable, so stop accepting for a moment instead of
      // spinning on it; connections wait in the backlog meanwhile.
      if (errno == EMFILE || errno == ENFILE) self->pause_accepting();
      return 0;
    }
    auto cred = proto::peer_credentials(conn.get());
    if (!cred) continue;
    unsigned& open_of_uid = self->connections_by_uid_[cred->uid];
    if (!policy::connection_allowed(self->opts_.limits, cred->uid, open_of_uid) ||
        self->connections_.size() >= self->opts_.limits.connections_total) {
      // Closed unread: the client sees the connection end and reports prewarmd as busy.
      if (self->refused_connections_++ % 100 == 0)
        log_event(LOG_WARNING, "control: uid " + std::to_string(cred->uid) + " has " + std::to_string(open_of_uid) +
                                   " connections open; refusing more (" + std::to_string(self->refused_connections_) +
                                   " refused so far)");
      continue;
    }
    auto c = std::make_unique<Connection>();
    c->id = self->next_connection_++;
    c->cred = *cred;
    if (auto p = proto::peer_pidfd(conn.get(), *cred)) c->pidfd = std::move(*p);
    else c->pidfd_error = p.error().describe();
    c->fd = std::move(conn);
    if (sd_event_add_io(self->event_, &c->io, c->fd.get(), EPOLLIN, on_connection_io, self) < 0) continue;
    sd_event_add_time_relative(self->event_, &c->deadline, CLOCK_MONOTONIC,
                               static_cast<uint64_t>(self->opts_.request_deadline_ms) * 1000, 10'000,
                               on_connection_deadline, self);
    ++open_of_uid;
    Connection& conn_ref = *c;
    self->connections_[c->id] = std::move(c);
    // The request is usually there already: answered now, a quick client never holds a slot, so
    // the cap binds only peers that are slow (50 concurrent launches of one user all go through).
    self->read_request(conn_ref);
  }
  return 0;
}

void Daemon::pause_accepting() {
  if (accept_pause_) return;
  log_event(LOG_WARNING, "control: out of file descriptors; not accepting connections for 100 ms");
  sd_event_source_set_enabled(accept_source_, SD_EVENT_OFF);
  sd_event_add_time_relative(
      event_, &accept_pause_, CLOCK_MONOTONIC, 100'000, 10'000,
      [](sd_event_source*, uint64_t, void* userdata) {
        auto* self = static_cast<Daemon*>(userdata);
        self->accept_pause_ = sd_event_source_disable_unref(self->accept_pause_);
        sd_event_source_set_enabled(self->accept_source_, SD_EVENT_ON);
        return 0;
      },
      this);
}

int Daemon::on_connection_io(sd_event_source* s, int, uint32_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [id, c] : self->connections_) {
    if (c->io != s) continue;
    if (c->writer) self->write_reply(*c);
    else self->read_request(*c);
    return 0;
  }
  return 0;
}

int Daemon::on_connection_deadline(sd_event_source* s, uint64_t, void* userdata) {
  auto* self = static_cast<Daemon*>(userdata);
  for (auto& [id, c] : self->connections_)
    if (c->deadline == s) {
      self->close_connection(id, "deadline passed");
      return 0;
    }
  return 0;
}

void Daemon::read_request(Connection& c) {
  auto done = c.reader.read_some(c.fd.get());
  if (!done) {
    const uint64_t id = c.id;
    send_reply(id, error_reply(done.error().describe()));
    return;
  }
  if (!*done) return;
  auto req = c.reader.take();
  Reply r;
  if (!req) {
    r.msg = error_reply(req.error().describe(), "usage");
  } else {
    c.received = std::move(req->fds);
    try {
      r = handle(req->msg, c);
    } catch (const json::exception& e) {
      r = Reply{error_reply(std::string("malformed request: ") + e.what(), "usage")};
    }
  }
  c.received.clear();  // a handler took what it keeps; the rest are closed now, not at close
  if (r.deferred) {
    // A capture or a query answers when it is done: no deadline meanwhile, and nothing more is read.
    c.deadline = sd_event_source_disable_unref(c.deadline);
    sd_event_source_set_enabled(c.io, SD_EVENT_OFF);
    return;
  }
  c.launch = r.launch;
  if (r.text) send_reply(c.id, std::move(*r.text));
  else send_reply(c.id, r.msg, std::move(r.fds));
}

void Daemon::send_reply(uint64_t conn, proto::JsonText msg) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  start_writing(*it->second, proto::MessageWriter(std::move(msg), {}));
}

void Daemon::send_reply(uint64_t conn, const json& msg, std::vector<UniqueFd> fds) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  start_writing(*it->second, proto::MessageWriter(msg, std::move(fds)));
}

void Daemon::start_writing(Connection& c, proto::MessageWriter reply) {
  c.writer.emplace(std::move(reply));
  // A fresh deadline for the reply: a peer that does not read is dropped.
  c.deadline = sd_event_source_disable_unref(c.deadline);
  sd_event_add_time_relative(event_, &c.deadline, CLOCK_MONOTONIC, static_cast<uint64_t>(opts_.request_deadline_ms) * 1000,
                             10'000, on_connection_deadline, this);
  sd_event_source_set_io_events(c.io, EPOLLOUT);
  sd_event_source_set_enabled(c.io, SD_EVENT_ON);
  write_reply(c);
}

void Daemon::write_reply(Connection& c) {
  auto done = c.writer->write_some(c.fd.get());
  if (!done) {
    close_connection(c.id, "the peer went away before its reply");
    return;
  }
  if (*done) {
    c.launch = 0;  // delivered
    close_connection(c.id);
  }
}

void Daemon::close_connection(uint64_t conn, const char* why) {
  auto it = connections_.find(conn);
  if (it == connections_.end()) return;
  std::unique_ptr<Connection> c = std::move(it->second);
  connections_.erase(it);
  sd_event_source_disable_unref(c->io);
  sd_event_source_disable_unref(c->deadline);
  if (auto u = connections_by_uid_.find(c->cred.uid); u != connections_by_uid_.end() && u->second > 0)
    if (--u->second == 0) connections_by_uid_.erase(u);
  if (auto q = queries_by_uid_.find(c->cred.uid); c->query && q != queries_by_uid_.end() && q->second > 0)
    if (--q->second == 0) queries_by_uid_.erase(q);
  // A launcher that never got its answer starts cold on its own: prewarmd does not follow it.
  if (c->launch) end_launch(c->launch);
  if (why && std::string(why) == "deadline passed")
    log_event(LOG_NOTICE, "control: a request of uid " + std::to_string(c->cred.uid) + " (pid " +
                              std::to_string(c->cred.pid) + ") was not complete within " +
                              std::to_string(opts_.request_deadline_ms) + " ms; closed");
}

Daemon::Reply Daemon::handle(const json& req, Connection& c) {
  const std::string op = req.value("op", "");
  const proto::PeerCred& cred = c.cred;
  if (op == "ping") return {{{"ok", true}, {"pid", ::getpid()}}};
  if (op == "register") return {op_register(req, cred)};
  if (op == "unregister") return {op_unregister(req, cred)};
  if (op == "list" || op == "stats") return op_query(req, c);
  if (op == "launch") return op_launch(req, c);
  if (op == "fallback") return {op_fallback(req, cred)};
  if (op == "invalidate") return {op_invalidate(req, cred)};
  if (op == "snapshot") return op_snapshot(req, c);
  return {error_reply("unknown request '" + op + "'", "usage")};
}

App* Daemon::visible_app(const std::string& name, const proto::PeerCred& cred, json& error) {
  auto it = registry_.apps.find(name);
  // Another user's app is reported exactly like a missing one: names are not disclosed.
  if (it == registry_.apps.end() || (cred.uid != 0 && cred.uid != it->second.config.uid)) {
    error = error_reply("no app named '" + name + "' is registered (see `prewarm list`)", "not_found");
    return nullptr;
  }
  return &it->second;
}

}  // namespace prewarm
