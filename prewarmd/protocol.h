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

struct Received {
  json msg;
  std::vector<UniqueFd> fds;
};
// Reads one line (at most 4 MiB) and any fds that came with it.
Result<Received> recv_message(int sock);

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};
Result<PeerCred> peer_credentials(int sock);

// A connected client socket (SOCK_STREAM or SOCK_DGRAM); `path` may start with '@' (abstract).
Result<UniqueFd> connect_unix(const std::string& path, int type);

// Connects to prewarmd, sends `request`, returns the response.
Result<Received> call(const std::string& runtime_dir, const json& request);

}  // namespace prewarm::proto
