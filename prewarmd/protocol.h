// The control protocol between `prewarm` and prewarmd: one JSON object per line over a Unix
// stream socket, one request and one response per connection, fds passed with SCM_RIGHTS. The
// daemon learns who is asking from SO_PEERCRED, never from the message.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "snapshot/result.h"
#include "snapshot/unique_fd.h"

namespace prewarm::proto {

using nlohmann::json;

// j as text; bytes that are not UTF-8 (file names may hold any) become U+FFFD instead of throwing.
std::string json_text(const json& j, int indent = -1);
// Well-formed UTF-8 (RFC 3629: no overlongs, surrogates or code points above U+10FFFF).
bool is_utf8(std::string_view s);

// $PREWARM_RUNTIME_DIR, else /run/prewarm: control.sock and notify.sock live there.
std::string runtime_dir();
std::string control_socket_path(const std::string& runtime_dir);
std::string notify_socket_path(const std::string& runtime_dir);

Result<void> send_message(int sock, const json& msg, const std::vector<int>& fds = {});

// A refusal as the daemon answers it: {"ok": false, "code": CODE, "error": MESSAGE}; the CLI maps
// the code to its exit status.
inline json error_reply(const std::string& message, const std::string& code = "error") {
  return {{"ok", false}, {"code", code}, {"error", message}};
}

struct Received {
  json msg;
  std::vector<UniqueFd> fds;
};
// Reads one line (at most 4 MiB) and any fds that came with it.
Result<Received> recv_message(int sock);

// One request read a piece at a time from a non-blocking socket, so the daemon's loop never
// waits on a peer: read_some() takes what has arrived and says whether the line is complete.
class MessageReader {
 public:
  explicit MessageReader(size_t max_bytes) : max_(max_bytes) {}
  Result<bool> read_some(int sock);
  // The complete message (call once read_some() said true).
  Result<Received> take();

 private:
  size_t max_;
  std::string text_;
  std::vector<UniqueFd> fds_;
};

// One reply written a piece at a time to a non-blocking socket; the fds go with the first byte.
// A message already serialized: one line of JSON, without its '\n'.
struct JsonText {
  std::string text;
};

class MessageWriter {
 public:
  MessageWriter(const json& msg, std::vector<UniqueFd> fds);
  MessageWriter(JsonText msg, std::vector<UniqueFd> fds);
  // True once everything is sent; an error if the peer is gone.
  Result<bool> write_some(int sock);

 private:
  std::string text_;
  size_t off_ = 0;
  std::vector<UniqueFd> fds_;
};

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<PeerCred> peer_credentials(int sock);

// The peer process itself, not its pid number: SO_PEERPIDFD where the kernel has it (6.5+), else
// pidfd_open of the SO_PEERCRED pid, accepted only if that process has the peer's uid. An error if
// the peer process is gone (its pid may already be someone else's).
Result<UniqueFd> peer_pidfd(int sock, const PeerCred& cred);
// Whether the process behind `pidfd` still runs (not yet exited).
bool process_alive(int pidfd);

// A connected client socket (SOCK_STREAM or SOCK_DGRAM); `path` may start with '@' (abstract).
Result<UniqueFd> connect_unix(const std::string& path, int type);

// Connects to prewarmd, sends `request` (with `fds`), returns the response; gives up with ETIMEDOUT
// after `timeout_ms` in all (connect, send and reply), so a stopped prewarmd cannot hold a caller.
Result<Received> call(const std::string& runtime_dir, const json& request, const std::vector<int>& fds = {},
                      int timeout_ms = 30'000);

}  // namespace prewarm::proto
