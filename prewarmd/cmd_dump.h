// `prewarm dump` and `prewarm restore`: the low-level engine commands.
#pragma once

#include <string>
#include <sys/types.h>

namespace prewarm::cli {

// Exit codes shared by the engine commands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnsupported = 3;

// `any_cgroup`: the process's cgroups are not compared with this command's.
int run_dump(pid_t pid, const std::string& images_dir, bool kill_after, bool any_cgroup = false);
// `on_restore`: a signal name or number delivered to the app once restored ("" for none).
int run_restore(const std::string& images_dir, bool allow_other_owner, const std::string& on_restore = {},
                bool lazy = false);

}  // namespace prewarm::cli
